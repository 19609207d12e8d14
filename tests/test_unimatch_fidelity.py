"""UniMatch against its authors' code (re-typed in unimatch_reference.py) on identical weights
and inputs: the DeepLabV3+ head, feature perturbation with the same dropout masks, and one
training iteration with their optimizer: loss, gradients and updated weights within 1e-5.
Each comparison has a negative control: our previous behaviour fails it.

The networks run in float64, so that the comparison is about the formulas and not about the
order in which float32 sums are accumulated: in float32 the logits are bitwise equal and the
gradients agree to about 5e-7 of their size."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import conformalsam_mmseg  # noqa: F401
import unimatch_reference as reference
from conformalsam_mmseg.models.segmentors import unimatch as unimatch_module
from conformalsam_mmseg.models.utils import levels_read_by
from conftest import REPO

TOL = 1e-5
K = 3
NORM = dict(type='BN', requires_grad=True)
SCHEDULE = osp.join(REPO, 'configs', '_base_', 'schedules', 'unimatch_sgd.py')


def tiny_segmentor(**head):
    """ResNet-18 V1c at 8 base channels (c1: 8 channels at stride 4, c4: 64 at stride 16, output
    stride 16 as the authors') under our UniMatchDeepLabV3PlusHead."""
    decode_head = dict(type='UniMatchDeepLabV3PlusHead', in_channels=64, in_index=3,
                       channels=16, dilations=(1, 6, 12, 18), c1_in_channels=8, c1_channels=8,
                       num_classes=K, norm_cfg=NORM, align_corners=True,
                       loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True))
    decode_head.update(head)
    return dict(
        type='EncoderDecoder',
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                      out_indices=(0, 1, 2, 3), strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                      contract_dilation=True, norm_cfg=NORM),
        decode_head=decode_head, train_cfg=dict(), test_cfg=dict(mode='whole'))


def randomise(module, seed):
    """Non-trivial weights and BN statistics: a classifier with spread-out logits, so that
    the confidence threshold keeps some pixels and drops others."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        head = module.decode_head
        head.conv_seg.weight.copy_(torch.randn(head.conv_seg.weight.shape, generator=g))
        head.conv_seg.bias.copy_(torch.randn(head.conv_seg.bias.shape, generator=g))


def build_unimatch(seed=0, head=None, **semi_train_cfg):
    model = MODELS.build(dict(type='UniMatch', segmentor=tiny_segmentor(**(head or {})),
                              semi_train_cfg=semi_train_cfg))
    randomise(model.student, seed)
    return model.double()


def reference_of(model):
    return reference.reference_for(model.student.decode_head, model.student.backbone)


def max_diff(a, b):
    return (a.detach() - b.detach()).abs().max().item()


def assert_state_equal(ref, model, grads=False):
    """Every parameter and buffer (or every parameter's gradient) of the two networks."""
    student = model.student
    pairs = reference.named_pairs(ref, student.decode_head, student.backbone)
    for name, theirs, ours in pairs:
        if grads:
            if not isinstance(ours, torch.nn.Parameter):
                continue
            theirs, ours = theirs.grad, ours.grad
            assert theirs is not None and ours is not None, name
        if ours.dtype == torch.long:  # num_batches_tracked
            assert torch.equal(theirs, ours), name
        else:
            assert max_diff(theirs, ours) <= TOL, (name, max_diff(theirs, ours))
    return len(pairs)


def images(n, g, size=(33, 41)):
    return torch.randn(n, 3, *size, generator=g, dtype=torch.float64)


# --- item 2: the head -----------------------------------------------------------------------
@pytest.mark.parametrize('train', [True, False])
def test_network_output_and_gradients_equal_the_reference(train):
    model = build_unimatch()
    ref = reference_of(model)
    model.train(train)
    ref.train(train)
    x = images(2, torch.Generator().manual_seed(1))
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = model.logits(model.student, x_ours)
    theirs = ref(x_ref)
    assert ours.shape == theirs.shape == (2, K, 33, 41)
    assert max_diff(ours, theirs) <= TOL
    w = torch.randn(ours.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    (ours * w).sum().backward()
    (theirs * w).sum().backward()
    assert max_diff(x_ours.grad, x_ref.grad) <= TOL
    assert assert_state_equal(ref, model, grads=True) > 50


def test_head_negative_controls(monkeypatch):
    """mmseg's choices fail the comparison: align_corners=False, image pooling first."""
    x = images(2, torch.Generator().manual_seed(1))
    model = build_unimatch(head=dict(align_corners=False)).train()
    assert max_diff(model.logits(model.student, x), reference_of(model).train()(x)) > 1e-3

    model = build_unimatch().train()
    ref = reference_of(model).train()
    head = model.student.decode_head
    from mmseg.models.utils import resize

    def pooling_first(c4):
        pooled = resize(head.image_pool(c4), size=c4.shape[2:], mode='bilinear',
                        align_corners=True)
        return head.bottleneck(torch.cat([pooled] + head.aspp_modules(c4), dim=1))
    monkeypatch.setattr(head, 'aspp', pooling_first)
    assert max_diff(model.logits(model.student, x), ref(x)) > 1e-3


def test_head_refuses_a_missing_c1_branch():
    with pytest.raises(ValueError, match='c1_in_channels > 0'):
        MODELS.build(tiny_segmentor(c1_in_channels=0))


# --- item 3: feature perturbation -----------------------------------------------------------
def perturbed_forward(forward, seed):
    torch.manual_seed(seed)
    out = forward()
    return out, torch.get_rng_state()


def test_feature_perturbation_equals_the_reference_with_the_same_masks():
    model = build_unimatch().train()
    ref = reference_of(model).train()
    x = images(4, torch.Generator().manual_seed(3))
    (preds, preds_fp), rng_ours = perturbed_forward(lambda: model.forward_with_fp(x), 7)
    (out, out_fp), rng_ref = perturbed_forward(lambda: ref(x, need_fp=True), 7)
    # The same random numbers were drawn, in the same order: c1's mask, then c4's.
    assert torch.equal(rng_ours, rng_ref)
    assert max_diff(preds, out) <= TOL and max_diff(preds_fp, out_fp) <= TOL
    assert max_diff(preds_fp, preds) > 0.1  # the perturbation changes the prediction
    g = torch.Generator().manual_seed(4)
    w, w_fp = (torch.randn(preds.shape, generator=g, dtype=torch.float64) for _ in range(2))
    ((preds * w).sum() + (preds_fp * w_fp).sum()).backward()
    ((out * w).sum() + (out_fp * w_fp).sum()).backward()
    assert_state_equal(ref, model, grads=True)


def test_perturbing_every_level_fails_the_comparison():
    """Negative control: the previous behaviour (fp_levels='all') drops out c2 and c3 too,
    drawing more random numbers, so c4's mask and the output differ."""
    model = build_unimatch(fp_levels='all').train()
    ref = reference_of(model).train()
    x = images(4, torch.Generator().manual_seed(3))
    (_, preds_fp), rng_ours = perturbed_forward(lambda: model.forward_with_fp(x), 7)
    (_, out_fp), rng_ref = perturbed_forward(lambda: ref(x, need_fp=True), 7)
    assert not torch.equal(rng_ours, rng_ref)
    assert max_diff(preds_fp, out_fp) > 1e-3


def test_perturbed_levels_come_from_the_head():
    seen = []
    model = build_unimatch(head=dict(in_channels=32, in_index=2, c1_in_channels=16,
                                     c1_in_index=1)).train()
    model.feature_perturbation.register_forward_hook(
        lambda m, inp, out: seen.append(inp[0].shape[1]))
    model.forward_with_fp(images(2, torch.Generator().manual_seed(0)))
    assert seen == [16, 32]  # levels 1 then 2 (channels 16, 32), not 0 or 3
    assert model.perturbed_levels(4) == [1, 2]
    assert build_unimatch(fp_levels=[3, 0]).perturbed_levels(4) == [0, 3]
    assert build_unimatch(fp_levels='all').perturbed_levels(4) == [0, 1, 2, 3]


def test_levels_read_by_heads():
    depthwise = MODELS.build(dict(
        type='DepthwiseSeparableASPPHead', in_channels=64, in_index=3, channels=16,
        dilations=(1, 6), c1_in_channels=8, c1_channels=8, num_classes=K))
    assert levels_read_by(depthwise, 4) == [0, 3]
    no_c1 = MODELS.build(dict(
        type='DepthwiseSeparableASPPHead', in_channels=64, in_index=-1, channels=16,
        dilations=(1, 6), c1_in_channels=0, c1_channels=8, num_classes=K))
    assert levels_read_by(no_c1, 4) == [3]
    segformer = MODELS.build(dict(type='SegformerHead', in_channels=[8, 16, 32, 64],
                                  in_index=[0, 1, 2, 3], channels=16, num_classes=K))
    assert levels_read_by(segformer, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match='in_index / c1_in_index'):
        levels_read_by(depthwise, 3)


@pytest.mark.parametrize('cfg, match', [
    (dict(fp_levels='some'), 'fp_levels'), (dict(fp_levels=[]), 'fp_levels'),
    (dict(mix_source='others'), 'mix_source')])
def test_bad_options_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_unimatch(**cfg)


# --- one training iteration with the authors' optimizer -------------------------------------
def unimatch_batch(seed, num_lb=2, num_ulb=2, size=(33, 41)):
    """The tensors of one iteration, as the authors' loaders give them (float CutMix boxes,
    long ignore masks: 255 = padding)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = dict(img_x=images(num_lb, g, size),
                 mask_x=torch.randint(0, K, (num_lb, h, w), generator=g),
                 ignore_mask=torch.zeros(num_ulb, h, w, dtype=torch.long),
                 ignore_mask_mix=torch.zeros(num_ulb, h, w, dtype=torch.long))
    batch['mask_x'][0, -3:] = 255
    batch['ignore_mask'][1, :, -5:] = 255
    batch['ignore_mask_mix'][0, -4:] = 255
    for view in ('img_u_w', 'img_u_s1', 'img_u_s2'):
        batch[view] = images(num_ulb, g, size)
        batch[view + '_mix'] = images(num_ulb, g, size)
    for name, (y, x) in (('cutmix_box1', (slice(5, 20), slice(10, 30))),
                         ('cutmix_box2', (slice(0, 33), slice(25, 41)))):
        box = torch.zeros(num_ulb, h, w)
        box[0, y, x] = 1  # sample 1 has no box, as with probability 1 - p
        batch[name] = box
    return batch


def our_inputs(batch):
    """The same iteration as our segmentor receives it: 2B unlabeled samples, u then mix."""
    def samples(maps):
        shape = tuple(maps.shape[-2:])
        meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape)
        return [SegDataSample(gt_sem_seg=PixelData(data=m[None]), metainfo=meta) for m in maps]
    ignore = torch.cat((batch['ignore_mask'], batch['ignore_mask_mix']))
    inputs = dict(sup=batch['img_x'])
    for branch, view in (('unsup_weak', 'img_u_w'), ('unsup_strong1', 'img_u_s1'),
                         ('unsup_strong2', 'img_u_s2')):
        inputs[branch] = torch.cat((batch[view], batch[view + '_mix']))
    data_samples = dict(sup=samples(batch['mask_x']), unsup_weak=samples(ignore),
                        unsup_strong1=samples(ignore), unsup_strong2=samples(ignore))
    return inputs, data_samples


def optim_wrapper_of(model, lr, paramwise=True):
    """The optimizer of configs/_base_/schedules/unimatch_sgd.py (lr changed)."""
    cfg = Config.fromfile(SCHEDULE).optim_wrapper
    cfg.optimizer.lr = lr
    if not paramwise:
        cfg.pop('paramwise_cfg')
    return build_optim_wrapper(model, cfg)


def run_both(monkeypatch, model, ref, optim_wrapper, lr, thresh=0.7, seed=5):
    """One iteration of ours and of the reference from the same RNG state; returns our
    losses, the reference's terms and the two RNG states after the loss."""
    batch = unimatch_batch(0)
    boxes = iter([batch['cutmix_box1'].bool(), batch['cutmix_box2'].bool()])
    monkeypatch.setattr(unimatch_module, 'cutmix_boxes', lambda *a, **k: next(boxes))
    torch.manual_seed(seed)
    losses = model.loss(*our_inputs(batch))
    rng_ours = torch.get_rng_state()
    loss, _ = model.parse_losses(losses)
    optim_wrapper.backward(loss)

    ref_optimizer = reference.sgd(ref, lr=lr)
    torch.manual_seed(seed)
    out = reference.unimatch_loss(ref, conf_thresh=thresh,
                                  **{k: v.clone() for k, v in batch.items()})
    rng_ref = torch.get_rng_state()
    ref_optimizer.zero_grad()
    out['loss'].backward()
    return losses, loss, out, ref_optimizer, (rng_ours, rng_ref)


def test_one_iteration_equals_the_reference(monkeypatch):
    """Loss terms, every gradient, and every weight and BN statistic after one SGD step.
    The learning rate is raised from the config's 0.001 to 0.1 (head 1.0) so that the step
    moves the weights by far more than the tolerance; the config's own groups are checked
    at its own rate below."""
    lr, thresh = 0.1, 0.7
    model = build_unimatch(conf_thresh=thresh)
    ref = reference_of(model)
    optim_wrapper = optim_wrapper_of(model, lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses, loss, out, ref_optimizer, (rng_ours, rng_ref) = run_both(
        monkeypatch, model, ref, optim_wrapper, lr, thresh)

    assert torch.equal(rng_ours, rng_ref)
    assert abs(loss.item() - out['loss'].item()) <= TOL
    terms = (('sup_loss_x', 'loss_x', 0.5), ('unsup_loss_s1', 'loss_u_s1', 0.125),
             ('unsup_loss_s2', 'loss_u_s2', 0.125), ('unsup_loss_fp', 'loss_u_w_fp', 0.25))
    for ours, theirs, weight in terms:
        assert abs(losses[ours].item() - weight * out[theirs].item()) <= TOL, ours
    assert 0.1 < out['mask_ratio'].item() < 0.9  # the threshold keeps some pixels, not all
    assert abs(losses['unsup_mask_ratio'].item() - out['mask_ratio'].item()) <= TOL
    assert_state_equal(ref, model, grads=True)

    optim_wrapper.step()
    ref_optimizer.step()
    assert_state_equal(ref, model)
    moved = max(max_diff(p, before[n]) for n, p in model.named_parameters())
    assert moved > 100 * TOL


def test_one_iteration_negative_controls(monkeypatch):
    """Our previous feature perturbation (every level), or an optimizer without the authors'
    x10 for the head, fails the comparison."""
    lr = 0.1
    model = build_unimatch(conf_thresh=0.7, fp_levels='all')
    ref = reference_of(model)
    run_both(monkeypatch, model, ref, optim_wrapper_of(model, lr), lr)
    with pytest.raises(AssertionError):
        assert_state_equal(ref, model, grads=True)

    model = build_unimatch(conf_thresh=0.7)
    ref = reference_of(model)
    optim_wrapper = optim_wrapper_of(model, lr, paramwise=False)
    *_, ref_optimizer, _ = run_both(monkeypatch, model, ref, optim_wrapper, lr)
    assert_state_equal(ref, model, grads=True)  # same gradients ...
    optim_wrapper.step()
    ref_optimizer.step()
    with pytest.raises(AssertionError):
        assert_state_equal(ref, model)  # ... different step


# --- the configs' optimizer: the authors' parameter groups ----------------------------------
def authors_group_mismatches(model, optim_wrapper, lr, multi=10):
    """Names of the parameters whose lr, momentum or weight decay is not the authors': lr
    for the backbone, lr x ``multi`` (their lr_multi) for every other parameter, momentum 0.9,
    weight decay 1e-4."""
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    groups = {names[id(p)]: g for g in optim_wrapper.optimizer.param_groups for p in g['params']}
    wrong = sorted(set(names.values()) - set(groups))
    for name, group in groups.items():
        expected = lr if 'backbone' in name else lr * multi
        if (abs(group['lr'] - expected) > 1e-12 * expected or group['momentum'] != 0.9
                or group['weight_decay'] != 1e-4):
            wrong.append(name)
    return wrong


@pytest.mark.parametrize('config, lr, multi', [
    ('unimatch_deeplabv3plus_r101_voc-classic-92.py', 0.001, 10),     # their pascal.yaml
    ('unimatch_deeplabv3plus_effl0_camvid-1-8.py', 0.005, 1)])        # their cityscapes.yaml
def test_config_optimizer_has_the_authors_parameter_groups(config, lr, multi):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'unimatch', config))
    model = MODELS.build(cfg.model)
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert authors_group_mismatches(model, build_optim_wrapper(model, cfg.optim_wrapper),
                                    lr, multi) == []
    # negative control: the other recipe's head multiplier
    cfg.optim_wrapper.paramwise_cfg.custom_keys.decode_head.lr_mult = 11 - multi
    wrong = authors_group_mismatches(model, build_optim_wrapper(model, cfg.optim_wrapper), lr,
                                     multi)
    assert wrong and all('decode_head' in name for name in wrong)


def test_camvid_configs_take_the_street_scene_recipe():
    for split in ('1-16', '1-8', '1-4'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'unimatch',
                                       f'unimatch_deeplabv3plus_effl0_camvid-{split}.py'))
        train = cfg.model.semi_train_cfg
        assert train.conf_thresh == 0.0
        assert train.sup_loss == dict(type='ProbOhem', thresh=0.7, min_kept=16000)


def test_camvid_supervised_row_of_the_hosts_recipe():
    """configs/supervised/..._street-scenes.py: the CamVid supervised config with only the
    hosts' optimizer and labeled loss changed, those being UniMatch's and AllSpark's."""
    def load(*path):
        return Config.fromfile(osp.join(REPO, 'configs', *path))
    ours = load('supervised', 'deeplabv3plus_effl0_camvid-1-8_street-scenes.py')
    base = load('supervised', 'deeplabv3plus_effl0_camvid-1-8.py')
    for host in (load('unimatch', 'unimatch_deeplabv3plus_effl0_camvid-1-8.py'),
                 load('allspark', 'allspark_deeplabv3plus_effl0_camvid-1-8.py')):
        assert ours.optim_wrapper == host.optim_wrapper
        assert ours.param_scheduler == host.param_scheduler
        ohem = host.model.semi_train_cfg.sup_loss
        assert ours.model.decode_head.loss_decode == dict(
            type='ProbOhemLoss', thresh=ohem.thresh, min_kept=ohem.min_kept)
    assert base.optim_wrapper != ours.optim_wrapper   # negative control: another optimizer
    ours_d, base_d = ours.to_dict(), base.to_dict()
    assert {k for k in set(ours_d) | set(base_d) if ours_d.get(k) != base_d.get(k)} == {
        'model', 'optim_wrapper', 'optimizer'}
    ours_d['model']['decode_head'].pop('loss_decode')
    base_d['model']['decode_head'].pop('loss_decode')
    assert ours_d['model'] == base_d['model']
