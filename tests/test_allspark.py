"""AllSpark against the authors' description, evaluated by hand on fixed tensors."""
import io
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.allspark import (AllSparkModule, ChannelCrossAttention,
                                                SemanticMemory, deepest_feature_size)
from conformalsam_mmseg.models.segmentors.allspark import AllSpark, check_equal_batches
from conftest import REPO

B0_CONFIG = osp.join(REPO, 'configs', '_base_', 'models', 'allspark_mit-b0.py')
K, CROP = 3, 64  # tiny MiT at crop 64: deepest feature 2 x 2, 32 channels


def tiny_allspark_cfg(**semi_train_cfg):
    """MiT with embed_dims 16 and one layer per stage (widths 16/16/32/32), no download."""
    cfg = Config.fromfile(B0_CONFIG).model
    cfg.data_preprocessor.data_preprocessor.size = (CROP, CROP)
    net = cfg.segmentor
    net.backbone.update(embed_dims=16, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
                        init_cfg=None)
    net.neck.in_channels = 32
    net.decode_head.update(in_channels=[16, 16, 32, 32], channels=16, num_classes=K)
    cfg.semi_train_cfg.update(semi_train_cfg)
    return cfg


def build_tiny(seed=0, **semi_train_cfg):
    torch.manual_seed(seed)
    model = MODELS.build(tiny_allspark_cfg(**semi_train_cfg))
    model.init_weights()
    return model


def samples(maps):
    shape = tuple(maps.shape[-2:])
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
    return [SegDataSample(gt_sem_seg=PixelData(data=m[None].long()), metainfo=meta)
            for m in maps]


def fixed_batch(b=2, seed=0, pad_rows=0):
    g = torch.Generator().manual_seed(seed)
    # 16 x 16 blocks of one colour, so that the labeling below can be learnt at 1/4 resolution
    img_x = F.interpolate(torch.randn(b, 3, 4, 4, generator=g), size=(CROP, CROP))
    mask_x = img_x.argmax(1)  # a learnable labeling: the strongest of the K = 3 colours
    mask_x[:, :3] = 255  # ignored ground truth
    img_u = torch.randn(b, 3, CROP, CROP, generator=g)
    ignore = torch.zeros(b, CROP, CROP, dtype=torch.long)
    if pad_rows:
        ignore[:, -pad_rows:] = 255
    return (dict(sup=img_x, unsup_weak=img_u),
            dict(sup=samples(mask_x), unsup_weak=samples(ignore)))


# --- the AllSpark module -------------------------------------------------------------------
def test_module_output_and_attention_shapes():
    b, c_in, c, h, w = 2, 5, 8, 2, 3
    module = AllSparkModule(c_in, num_classes=K, num_tokens=h * w, embed_channels=c)
    x = torch.randn(2 * b, c_in, h, w)
    for use_memory, source in ((False, 'batch'), (True, 'memory')):
        module.train()
        module.prepare(None, use_memory)
        assert module(x).shape == x.shape
        assert module.kv_source == source
    module.eval()  # evaluation: B maps in, B maps out (no labeled / unlabeled halves)
    assert module(x[:3]).shape == x[:3].shape and module.kv_source == 'batch'

    attn = module.attention.eval()
    x_l, x_u = torch.randn(b, h * w, c), torch.randn(b, h * w, c)
    out, weights = attn.labeled_attention(x_l, x_u)  # one map over all H*C key channels
    assert out.shape == (b, h * w, c) and weights.shape == (b, 2 * c, b * 2 * c)
    out, weights = attn.labeled_attention(x_l, module.semantic_memory.as_tokens())
    assert out.shape == (b, h * w, c) and weights.shape == (b, 2 * c, K * 2 * c)
    out, weights = attn.labeled_attention(x_l, x_u, paired=True)
    assert weights.shape == (b, 2 * c, 2 * c)
    out, weights = attn.unlabeled_attention(x_u)  # per head
    assert out.shape == (b, h * w, c) and weights.shape == (b, 2, c, c)
    assert attn.out_l.in_features == attn.out_u.in_features == 2 * c  # H*C -> C


def test_odd_batch_is_refused_by_the_module():
    module = AllSparkModule(4, num_classes=K, num_tokens=4)
    with pytest.raises(ValueError, match='equal size'):
        module(torch.randn(3, 4, 2, 2))


def instance_norm(m, eps=1e-5):
    """(x - mean) / sqrt(biased var + eps) over the whole map, from the definition."""
    mean = m.mean()
    return (m - mean) / torch.sqrt(((m - mean) ** 2).mean() + eps)


def test_each_labeled_channel_is_a_convex_combination_of_unlabeled_channels():
    torch.manual_seed(0)
    b, n, c, heads = 2, 6, 4, 2
    attn = ChannelCrossAttention(c, num_heads=heads, attn_drop=0.1).eval()  # no dropout
    with torch.no_grad():  # values: each head a copy of the channels; output: their mean
        attn.value_l.weight.copy_(torch.eye(c).repeat(heads, 1))
        attn.out_l.weight.copy_(torch.eye(c).repeat(1, heads) / heads)
    x_l, x_u = torch.randn(b, n, c), torch.randn(b, n, c)
    out, weights = attn.labeled_attention(x_l, x_u)

    # b n c -> n (b c) over the H*C projected channels: key j = s * H*C + h * C + ch is
    # channel ch of unlabeled image s (the value projection copies it into every head).
    u = torch.stack([x_u[s, :, ch] for s in range(b) for _ in range(heads)
                     for ch in range(c)], dim=1)  # (N, B*H*C)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(b, heads * c))
    for i in range(b):
        reborn = weights[i] @ u.T  # (H*C, N): each a convex combination of unlabeled channels
        expected = sum(reborn[hd * c:(hd + 1) * c] for hd in range(heads)) / heads
        assert torch.allclose(out[i], expected.T, atol=1e-6)
        # the weights themselves: softmax(psi(q^T k)) over the whole (H*C) x (B*H*C) map
        q = x_l[i] @ attn.query_l.weight.T  # (N, H*C)
        k = torch.cat([x_u[s] @ attn.key_l.weight.T for s in range(b)], dim=1)
        hand = instance_norm(q.T @ k).softmax(dim=-1)
        assert torch.allclose(weights[i], hand, atol=1e-5)


# --- the semantic memory -------------------------------------------------------------------
def test_grouping_picks_the_class_of_largest_cosine_similarity():
    # Pseudo probability map 4 x 4, class 0 = 0.8 on the left half; resized to the 2 x 2 feature
    # (bilinear, factor 2 = mean of each 2 x 2 block) it is p0 = [.8, .2, .8, .2] (row-major),
    # p1 = [.2, .8, .2, .8]. The second image has the classes swapped.
    left = torch.zeros(4, 4)
    left[:, :2] = 1
    prob0 = torch.stack((0.2 + 0.6 * left, 0.8 - 0.6 * left))
    prob = torch.stack((prob0, prob0.flip(0)))  # (2, K=2, 4, 4)
    vectors = [[1, 0, 1, 0], [0, 2, 0, 1], [0.2, 0.1, 0.3, 0.9], [-1, 0, -1, 0]]
    channels = torch.tensor(vectors).reshape(1, 4, 2, 2).repeat(2, 1, 1, 1)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b))

    p0, p1 = [.8, .2, .8, .2], [.2, .8, .2, .8]
    hand = [[max((0, 1), key=lambda k: cos(v, (p0, p1)[k])) for v in vectors],
            [max((0, 1), key=lambda k: cos(v, (p1, p0)[k])) for v in vectors]]
    assert hand == [[0, 1, 1, 1], [1, 0, 0, 0]]  # cos values: .97/.24, .36/.94, .53/.79, ...
    assert SemanticMemory.group(channels, prob).tolist() == hand

    memory = SemanticMemory(num_classes=2, capacity=4, length=4)
    memory.update(channels, prob)  # image 0's channels first, each in channel order
    v = torch.tensor(vectors)
    # class 0: channel 0 of image 0, then channels 1, 2, 3 of image 1; class 1 the others.
    assert torch.equal(memory.items(0), v[[0, 1, 2, 3]])
    assert torch.equal(memory.items(1), v[[1, 2, 3, 0]])


def test_queue_is_fifo_per_class_and_bounded():
    memory = SemanticMemory(num_classes=2, capacity=3, length=2)

    def vecs(*values):
        return torch.tensor([[v, -v] for v in values], dtype=torch.float)

    memory.push(0, vecs(1, 2))
    assert torch.equal(memory.items(0), vecs(1, 2)) and memory.count.tolist() == [2, 0]
    memory.push(0, vecs(3, 4, 5))  # one more than fits: 1 and 2 leave, oldest first
    assert torch.equal(memory.items(0), vecs(3, 4, 5))
    memory.push(0, vecs(6))
    assert torch.equal(memory.items(0), vecs(4, 5, 6))
    memory.push(0, vecs(*range(7, 14)))  # more than the capacity at once: the last 3 stay
    assert torch.equal(memory.items(0), vecs(11, 12, 13))
    memory.push(1, vecs(20))
    assert torch.equal(memory.items(1), vecs(20))
    assert torch.equal(memory.items(0), vecs(11, 12, 13))  # the other queue is untouched
    assert memory.queue.shape == (2, 3, 2) and memory.count.tolist() == [3, 1]
    with pytest.raises(ValueError, match='crop_size'):
        memory.push(0, torch.zeros(1, 5))


def test_memory_length_follows_the_crop():
    assert deepest_feature_size(513) == (17, 17)  # AllSpark's (513 // 32 + 1) ** 2 = 289
    assert deepest_feature_size((512, 160)) == (16, 5)
    model = build_tiny()
    assert model.allspark.semantic_memory.queue.shape == (K, 32, 4)  # C = 32, N = 2 * 2


# --- the segmentor -------------------------------------------------------------------------
@pytest.mark.parametrize('ignore_padding', [False, True])
def test_loss_is_the_authors_formula(monkeypatch, ignore_padding):
    model = build_tiny(ignore_padding=ignore_padding).train()
    inputs, data_samples = fixed_batch(pad_rows=5)
    g = torch.Generator().manual_seed(1)
    logits_u_eval = 3 * torch.randn(2, K, CROP, CROP, generator=g)
    logits_train = 3 * torch.randn(4, K, CROP, CROP, generator=g)
    calls = []

    def fake_logits(network, x, feats=None):
        calls.append((x.shape[0], network.training, torch.is_grad_enabled()))
        if len(calls) == 1:
            assert torch.equal(x, inputs['unsup_weak'])
            return logits_u_eval.clone()
        assert torch.equal(x, torch.cat((inputs['sup'], inputs['unsup_weak'])))
        return logits_train.clone().requires_grad_()

    monkeypatch.setattr(model, 'logits', fake_logits)
    losses = model.loss(inputs, data_samples)
    # Pseudo-labels from an eval-mode, no-grad pass; the training forward in train mode.
    assert calls == [(2, False, False), (4, True, True)]
    # The memory groups channels by the pseudo-label pass's logits, as the authors.
    assert torch.equal(model.allspark._pseudo_logits, logits_u_eval)

    mask_x = torch.stack([s.gt_sem_seg.data[0] for s in data_samples['sup']])
    pseudo = logits_u_eval.argmax(1)  # no confidence threshold
    if ignore_padding:
        pseudo[:, -5:] = 255
    loss_x = F.cross_entropy(logits_train[:2], mask_x, ignore_index=255)
    loss_u = F.cross_entropy(logits_train[2:], pseudo, ignore_index=255)
    assert losses['sup_loss_x'].item() == pytest.approx(0.5 * loss_x.item(), rel=1e-6)
    assert losses['unsup_loss_u'].item() == pytest.approx(0.5 * loss_u.item(), rel=1e-6)
    # The padded rows make a difference (the two settings are not the same loss).
    other = logits_u_eval.argmax(1)
    if not ignore_padding:
        other[:, -5:] = 255
    assert loss_u.item() != pytest.approx(F.cross_entropy(logits_train[2:], other,
                                                          ignore_index=255).item())
    assert not any('loss' in k for k in losses if k.startswith('unsup_memory'))


def test_eval_keys_self_is_each_image_attending_to_itself():
    model = build_tiny().eval()
    model.allspark.eval_keys = 'self'
    g = torch.Generator().manual_seed(2)
    imgs = torch.randn(2, 3, CROP, CROP, generator=g)
    memory_before = model.allspark.semantic_memory.queue.clone()
    with torch.no_grad():
        results = model.predict(imgs, samples(torch.zeros(2, CROP, CROP)))
        net = model.student
        for i in range(2):  # one image at a time: the batch is the image itself
            feats = net.backbone(imgs[i:i + 1])
            feats[-1] = net.neck.allspark(feats[-1])
            manual = F.interpolate(net.decode_head(feats), size=(CROP, CROP), mode='bilinear',
                                   align_corners=False)[0]
            assert torch.allclose(results[i].seg_logits.data, manual, atol=1e-5)
    assert model.allspark.kv_source == 'self'
    assert torch.equal(model.allspark.semantic_memory.queue, memory_before)
    assert int(model.iteration) == 0  # prediction is no training iteration


def test_memory_is_used_only_after_the_warmup(monkeypatch):
    model = build_tiny(memory_warmup_iters=2).train()
    memory = model.allspark.semantic_memory
    attention = model.allspark.attention
    seen = []
    original = attention.labeled_attention

    def spy(x_l, kv, paired=False):
        if model.allspark.training:
            seen.append((model.allspark.kv_source, kv.detach().clone(),
                         memory.as_tokens().clone()))
        return original(x_l, kv, paired)

    monkeypatch.setattr(attention, 'labeled_attention', spy)
    inputs, data_samples = fixed_batch()
    logs = [model.loss(inputs, data_samples) for _ in range(3)]
    assert [s[0] for s in seen] == ['batch', 'batch', 'memory']
    assert [float(log['unsup_memory_on']) for log in logs] == [0, 0, 1]
    for source, kv, mem in seen:
        if source == 'batch':  # the unlabeled half: B = 2 images of N = 4 tokens, C = 32
            assert kv.shape == (2, 4, 32)
        else:  # the memory, this step's channels already enqueued
            assert torch.equal(kv, mem) and kv.shape == (K, 4, 32) and kv.abs().sum() > 0
    assert int(model.iteration) == 3
    assert float(logs[-1]['unsup_memory_fill']) > 0


def test_checkpoint_round_trip_restores_memory_and_iteration():
    model = build_tiny(memory_warmup_iters=1).train()
    inputs, data_samples = fixed_batch()
    for _ in range(2):
        model.loss(inputs, data_samples)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)

    restored = build_tiny(seed=1, memory_warmup_iters=1)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    mem, mem2 = model.allspark.semantic_memory, restored.allspark.semantic_memory
    assert mem.count.sum() > 0
    for name in ('queue', 'ptr', 'count'):
        assert torch.equal(getattr(mem, name), getattr(mem2, name)), name
    assert int(restored.iteration) == 2
    restored.train().loss(inputs, data_samples)
    assert restored.allspark.kv_source == 'memory'


def test_unequal_batches_fail_with_a_message():
    model = build_tiny().train()
    inputs, data_samples = fixed_batch()
    inputs['unsup_weak'] = torch.cat((inputs['unsup_weak'], inputs['unsup_weak'][:1]))
    data_samples['unsup_weak'] = data_samples['unsup_weak'] + data_samples['unsup_weak'][:1]
    with pytest.raises(ValueError, match='equal labeled and unlabeled batch sizes'):
        model.loss(inputs, data_samples)

    with pytest.raises(ValueError, match=r'equal labeled and unlabeled.*\[2, 4\]'):
        MODELS.build(tiny_allspark_cfg(source_ratio=[2, 4]))
    MODELS.build(tiny_allspark_cfg(source_ratio=[2, 2]))

    cfg = Config(dict(model=dict(type='AllSpark'),
                      train_dataloader=dict(sampler=dict(source_ratio=[4, 8]))))
    with pytest.raises(ValueError, match='train_dataloader.sampler.source_ratio'):
        check_equal_batches(cfg)
    cfg.train_dataloader.sampler.source_ratio = [4, 4]
    check_equal_batches(cfg)
    cfg.model.type = 'UniMatch'
    cfg.train_dataloader.sampler.source_ratio = [4, 8]
    check_equal_batches(cfg)  # other methods are not concerned


def test_a_few_steps_lower_the_loss():
    model = build_tiny(memory_warmup_iters=2).train()
    optim = torch.optim.AdamW(model.parameters(), lr=2e-3)
    inputs, data_samples = fixed_batch(seed=3)
    totals, sups = [], []
    for _ in range(5):  # steps 0, 1 attend to the batch, steps 2-4 to the memory
        losses = model.loss(inputs, data_samples)
        total = losses['sup_loss_x'] + losses['unsup_loss_u']
        optim.zero_grad()
        total.backward()
        optim.step()
        totals.append(total.item())
        sups.append(losses['sup_loss_x'].item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < totals[0], totals
    assert sups[-1] < sups[0], sups


def test_allspark_is_registered_and_b5_config_builds_the_authors_model():
    assert MODELS.get('AllSpark') is AllSpark
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', 'allspark_mit-b5.py'))
    net = cfg.model.segmentor
    assert net.backbone.embed_dims * 8 == net.neck.in_channels == 512
    assert net.decode_head.channels == 768 and net.neck.num_heads == 2
    assert cfg.model.data_preprocessor.type == 'MultiBranchDataPreprocessor'


def test_the_cnn_variant_sizes_its_memory_from_the_feature_it_sees():
    """AllSpark on DeepLabV3+ EfficientNet-Lite0 (the CamVid network of every other method):
    feature_size gives the memory length; a training step and a prediction run at crop 160."""
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'allspark', 'allspark_deeplabv3plus_effl0_camvid-1-8.py')).model
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    assert model.allspark.semantic_memory.queue.shape == (11, 320, 100)  # C, 10 x 10
    crop = 160
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(4, 3, crop, crop, generator=g)
    feats = model.student.backbone(imgs)
    assert tuple(feats[-1].shape[-2:]) == (10, 10)   # the size feature_size promises
    gt = torch.randint(0, 11, (2, crop, crop), generator=g)
    losses = model.train().loss(
        dict(sup=imgs[:2], unsup_weak=imgs[2:]),
        dict(sup=samples(gt), unsup_weak=samples(torch.zeros(2, crop, crop))))
    assert all(torch.isfinite(losses[k]) for k in ('sup_loss_x', 'unsup_loss_u'))
    with torch.no_grad():
        out = model.eval().predict(imgs[:1], samples(torch.zeros(1, crop, crop)))
    assert out[0].pred_sem_seg.data.shape == (1, crop, crop)


def test_feature_size_overrides_the_mit_arithmetic():
    from conformalsam_mmseg.models.allspark import AllSparkNeck
    neck = AllSparkNeck(in_channels=8, num_classes=2, crop_size=160, feature_size=(3, 4))
    assert neck.allspark.semantic_memory.queue.shape == (2, 8, 12)
    assert AllSparkNeck(in_channels=8, num_classes=2, crop_size=160).allspark.semantic_memory \
        .queue.shape == (2, 8, 25)                    # MiT: 160 -> 5 x 5
    with pytest.raises(ValueError, match='feature_size must be the'):
        AllSparkNeck(in_channels=8, num_classes=2, crop_size=160, feature_size=(10, ))
