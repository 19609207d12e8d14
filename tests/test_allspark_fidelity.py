"""AllSpark equal to the authors' code on identical weights and inputs.

The reference (tests/allspark_reference.py) re-types the authors' module, memory, head and
training step; here both run in float64 from identical weights, inputs and random states, and
must give the same losses, gradients, optimizer step (the authors' parameter groups against
the optimizer our config builds) and semantic memory. Each negative control runs the reference
with one of the project's former behaviours and shows the comparison then fails.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from allspark_reference import ReferenceAllSpark, ReferenceAllSparkModel, authors_sgd
from conftest import REPO
from test_allspark import CROP, K, build_tiny, fixed_batch

from conformalsam_mmseg.models.allspark import AllSparkModule, SemanticMemory

SCHEDULE = osp.join(REPO, 'configs', '_base_', 'schedules', 'unimatch_sgd.py')


def twin_models(**semi_train_cfg):
    """Our model and an identical copy for the reference, in float64, training mode."""
    ours = build_tiny(**semi_train_cfg).double().train()
    return ours, copy.deepcopy(ours)


def double_batch(pad_rows=5):
    inputs, data_samples = fixed_batch(pad_rows=pad_rows)
    inputs = {k: v.double() for k, v in inputs.items()}
    mask_x = torch.stack([s.gt_sem_seg.data[0] for s in data_samples['sup']]).long()
    ignore = torch.stack([s.gt_sem_seg.data[0] for s in data_samples['unsup_weak']]).long()
    return inputs, data_samples, mask_x, ignore


def discrepancy(revert=(), steps=2, schedule_keys=None):
    """Largest absolute difference between our AllSpark and the reference over ``steps``
    training steps (memory on from the second): losses, every gradient, every parameter
    after the step, and the memory's queue and pointer."""
    ours, theirs = twin_models(memory_warmup_iters=1)
    ref = ReferenceAllSparkModel(theirs, revert)
    optim_cfg = Config.fromfile(SCHEDULE).optim_wrapper
    if schedule_keys is not None:
        optim_cfg.paramwise_cfg.custom_keys = schedule_keys
    our_optim = build_optim_wrapper(ours, optim_cfg)
    their_optim = authors_sgd(theirs)
    inputs, data_samples, mask_x, ignore = double_batch()
    worst = 0.0

    def gap(a, b):
        return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0

    for step in range(steps):
        torch.manual_seed(100 + step)
        losses = ours.loss(inputs, data_samples)
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        torch.manual_seed(100 + step)
        their_loss = ref.loss(inputs['sup'], mask_x, inputs['unsup_weak'], ignore,
                              using_smem=step >= 1)
        worst = max(worst, gap(loss, their_loss))
        our_optim.zero_grad()
        their_optim.zero_grad()
        loss.backward()
        their_loss.backward()
        named = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            if p.grad is not None or named[name].grad is not None:
                worst = max(worst, gap(p.grad, named[name].grad))
        our_optim.step()
        their_optim.step()
        for name, p in ours.named_parameters():
            worst = max(worst, gap(p.detach(), named[name].detach()))
        memory = ours.allspark.semantic_memory
        worst = max(worst, gap(memory.queue, ref.allspark.kv_queue),
                    gap(memory.ptr, ref.allspark.queue_ptr))
    return worst


def test_training_steps_equal_the_authors():
    """Losses, gradients, one SGD step with the authors' groups, and the memory, on a step
    with the batch as keys and a step with the memory as keys (items 1-9, 11)."""
    assert discrepancy() < 1e-9


@pytest.mark.parametrize('revert', [
    'averaged_cross', 'head_major_u', 'read_then_enqueue', 'softmax_grouping', 'paired_eval',
    'c1_first_head', 'ignore_padding'
])
def test_negative_control_each_former_behaviour_is_caught(revert):
    assert discrepancy(revert=(revert, )) > 1e-5


def test_negative_control_lr_of_the_module_outside_the_head_is_caught():
    """The authors train every non-backbone parameter (the AllSpark module too) at 10x lr;
    with only the heads at 10x, the step differs."""
    keys = {'decode_head': dict(lr_mult=10.0), 'auxiliary_head': dict(lr_mult=10.0)}
    assert discrepancy(steps=1, schedule_keys=keys) > 1e-7


def test_our_optimizer_groups_are_the_authors():
    ours, _ = twin_models()
    optim = build_optim_wrapper(ours, Config.fromfile(SCHEDULE).optim_wrapper).optimizer
    lr_of = {id(p): g['lr'] for g in optim.param_groups for p in g['params']}
    for name, p in ours.named_parameters():
        assert lr_of[id(p)] == pytest.approx(0.001 if 'backbone' in name else 0.01), name
    assert all(g['weight_decay'] == 1e-4 and g['momentum'] == 0.9 for g in optim.param_groups)


# --- the memory's slots --------------------------------------------------------------------
def memory_pair(capacity=4, length=6, num_classes=2):
    torch.manual_seed(0)
    module = AllSparkModule(3, num_classes, num_tokens=length, embed_channels=capacity)
    return module.semantic_memory, ReferenceAllSpark(module)


def test_more_channels_than_slots_in_one_step_fill_the_ring_as_the_authors():
    """Two images whose channels all go to class 0: 2C channels for C slots. The authors
    enqueue image by image, so the second image wraps around from where the first left."""
    memory, ref = memory_pair()
    ref_last_c = ReferenceAllSpark.__new__(ReferenceAllSpark)
    ref_last_c.__dict__.update(copy.deepcopy(ref.__dict__))
    ref_last_c.revert = {'last_c_at_ptr'}
    g = torch.Generator().manual_seed(1)
    logits = torch.zeros(2, 2, 4, 6)
    logits[:, 0] = 5.0  # class 0's map is constant; class 1's is zero: cos 0 vs > 0
    for _ in range(3):  # pointer 0 -> 2 -> ... with 3 channels of one image at a time
        channels = torch.rand(2, 4, 2, 3, generator=g) + 0.1  # positive: cos with class 0 > 0
        channels[:, 3] = -1  # channel 3 goes to class 1 (cos with the constant map < 0)
        memory.update(channels, logits)
        emb_u = channels.flatten(2).transpose(1, 2)  # (B, N, C)
        for r in (ref, ref_last_c):
            r.hw = (2, 3)
            r.update_memory(emb_u, logits)
        assert torch.equal(memory.queue, ref.kv_queue)
        assert torch.equal(memory.ptr, ref.queue_ptr)
    assert not torch.equal(ref.kv_queue, ref_last_c.kv_queue)  # the former layout differs


def test_memory_and_linear_init_are_the_authors():
    torch.manual_seed(0)
    module = AllSparkModule(64, num_classes=5, num_tokens=300, embed_channels=64)
    queue = module.semantic_memory.queue
    # torch.randn: standard normal noise (not zeros) in every slot
    assert abs(queue.mean().item()) < 0.02 and abs(queue.std().item() - 1) < 0.02
    for lin in module.attention.modules():
        if isinstance(lin, nn.Linear):  # Xavier-uniform: U(-a, a), a = sqrt(6 / (in + out))
            a = (6 / (lin.in_features + lin.out_features)) ** 0.5
            w = lin.weight
            assert w.abs().max() <= a and w.abs().max() > 0.97 * a
            assert abs(w.std().item() - a / 3 ** 0.5) < 0.02 * a
            assert lin.bias is None


def test_eval_mode_attends_to_the_whole_batch_or_to_itself():
    """The authors' evaluation (feature duplicated, keys of every image of the batch) is the
    default; eval_keys='self' is each image alone, which the authors get with a batch of 1."""
    ours, theirs = twin_models()
    ref = ReferenceAllSparkModel(theirs)
    g = torch.Generator().manual_seed(5)
    imgs = torch.randn(3, 3, CROP, CROP, generator=g, dtype=torch.float64)
    with torch.no_grad():
        batch = ours.logits(ours.student.eval(), imgs)
        assert ours.allspark.kv_source == 'batch'
        assert torch.allclose(batch, ref.forward(imgs, training=False), atol=1e-10)
        ours.allspark.eval_keys = 'self'
        alone = ours.logits(ours.student, imgs)
        assert ours.allspark.kv_source == 'self'
        for i in range(3):
            single = ref.forward(imgs[i:i + 1], training=False)
            assert torch.allclose(alone[i:i + 1], single, atol=1e-10)
        assert not torch.allclose(alone, batch, atol=1e-4)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match='eval_keys'):
        AllSparkModule(4, 2, 4, eval_keys='pairs')
    with pytest.raises(ValueError, match='sync'):
        SemanticMemory(2, 4, 4, sync='mean')


def test_the_memory_needs_logits_for_every_unlabeled_image():
    memory = SemanticMemory(K, 4, 6)
    with pytest.raises(ValueError, match='one map of 3 classes per unlabeled image'):
        memory.update(torch.randn(2, 4, 2, 3), torch.randn(1, K, 4, 6))
