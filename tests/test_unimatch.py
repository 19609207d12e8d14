"""UniMatch against the authors' formula, evaluated by hand on fixed tensors."""
import math

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.segmentors import unimatch as unimatch_module
from conformalsam_mmseg.models.utils import cutmix_box
from helpers import DEMO_CONFIG

K, H, W = 3, 4, 5


def build_unimatch(**semi_train_cfg):
    net = Config.fromfile(DEMO_CONFIG).model
    net.decode_head.num_classes = K
    return MODELS.build(dict(type='UniMatch', segmentor=net,
                             semi_train_cfg=semi_train_cfg)).eval()


def samples(maps):
    shape = tuple(maps.shape[-2:])
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, padding_size=[0, 0, 0, 0])
    return [SegDataSample(gt_sem_seg=PixelData(data=m[None].long()), metainfo=meta)
            for m in maps]


def hand_ce(logits, label):
    """-log softmax(logits)[label] for one pixel, from the definition."""
    z = [math.exp(v) for v in logits]
    return -math.log(z[label] / sum(z))


def hand_unsup_loss(pred, weak, mix, box, thresh):
    """criterion_u of UniMatch by loops: the pseudo-label, confidence and ignore value of a
    pixel come from the mix batch inside the box; masked CE summed / not-ignored count."""
    total, count = 0.0, 0
    for i in range(pred.shape[0]):
        for y in range(H):
            for x in range(W):
                src = mix if box[i, y, x] else weak
                probs = src['logits'][i, :, y, x].softmax(0)
                label, conf = int(probs.argmax()), float(probs.max())
                if src['ignore'][i, y, x] == 255:
                    continue
                count += 1
                if conf >= thresh:
                    total += hand_ce(pred[i, :, y, x].tolist(), label)
    return total / count


@pytest.mark.parametrize('with_padding', [False, True])
def test_total_loss_equals_the_formula(monkeypatch, with_padding):
    g = torch.Generator().manual_seed(0)
    num_lb, num_ulb, thresh = 2, 2, 0.5
    model = build_unimatch(conf_thresh=thresh)

    img_x = torch.randn(num_lb, 3, H, W, generator=g)
    mask_x = torch.randint(0, K, (num_lb, H, W), generator=g)
    mask_x[0, 0, :] = 255  # ignored ground truth
    u = {v: torch.randn(2 * num_ulb, 3, H, W, generator=g) for v in ('w', 's1', 's2')}
    ignore = torch.zeros(2 * num_ulb, H, W, dtype=torch.long)
    if with_padding:  # padded bottom rows of u, padded right column of the mix batch
        ignore[:num_ulb, -1, :] = 255
        ignore[num_ulb:, :, -1] = 255

    logits = {name: 3 * torch.randn(shape, generator=g) for name, shape in dict(
        x=(num_lb, K, H, W), u_w=(num_ulb, K, H, W), u_w_fp=(num_ulb, K, H, W),
        mix=(num_ulb, K, H, W), s1=(num_ulb, K, H, W), s2=(num_ulb, K, H, W)).items()}
    box1 = torch.zeros(num_ulb, H, W, dtype=torch.bool)
    box1[0, 1:3, 1:4] = True  # CutMix swaps labels here; sample 1 has no box
    box2 = torch.zeros(num_ulb, H, W, dtype=torch.bool)
    box2[1, 0:4, 2:5] = True
    boxes = iter([box1, box2])
    monkeypatch.setattr(unimatch_module, 'cutmix_boxes', lambda *a, **k: next(boxes))

    strong_inputs = []

    def fake_logits(network, inputs, feats=None):
        if torch.equal(inputs, u['w'][num_ulb:]):
            return logits['mix'].clone()
        strong_inputs.append(inputs)
        return torch.cat((logits['s1'], logits['s2'])).requires_grad_()

    def fake_forward_with_fp(inputs):
        assert torch.equal(inputs, torch.cat((img_x, u['w'][:num_ulb])))
        preds = torch.cat((logits['x'], logits['u_w'])).requires_grad_()
        preds_fp = torch.cat((torch.zeros_like(logits['x']), logits['u_w_fp'])).requires_grad_()
        return preds, preds_fp

    monkeypatch.setattr(model, 'logits', fake_logits)
    monkeypatch.setattr(model, 'forward_with_fp', fake_forward_with_fp)
    losses = model.loss(
        dict(sup=img_x, unsup_weak=u['w'], unsup_strong1=u['s1'], unsup_strong2=u['s2']),
        dict(sup=samples(mask_x), unsup_weak=samples(ignore),
             unsup_strong1=samples(ignore), unsup_strong2=samples(ignore)))

    # The strong views were CutMixed with the mix batch's strong views, inside the boxes only.
    s1_in, s2_in = strong_inputs[0].chunk(2)
    expect_s1 = torch.where(box1[:, None], u['s1'][num_ulb:], u['s1'][:num_ulb])
    expect_s2 = torch.where(box2[:, None], u['s2'][num_ulb:], u['s2'][:num_ulb])
    assert torch.equal(s1_in, expect_s1) and torch.equal(s2_in, expect_s2)

    weak = dict(logits=logits['u_w'], ignore=ignore[:num_ulb])
    mix = dict(logits=logits['mix'], ignore=ignore[num_ulb:])
    no_box = torch.zeros_like(box1)
    x_pixels = [(i, y, x) for i in range(num_lb) for y in range(H) for x in range(W)
                if mask_x[i, y, x] != 255]
    loss_x = sum(hand_ce(logits['x'][i, :, y, x].tolist(), int(mask_x[i, y, x]))
                 for i, y, x in x_pixels) / len(x_pixels)
    loss_s1 = hand_unsup_loss(logits['s1'], weak, mix, box1, thresh)
    loss_s2 = hand_unsup_loss(logits['s2'], weak, mix, box2, thresh)
    loss_fp = hand_unsup_loss(logits['u_w_fp'], weak, mix, no_box, thresh)
    expected = (loss_x + 0.25 * loss_s1 + 0.25 * loss_s2 + 0.5 * loss_fp) / 2

    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert losses['sup_loss_x'].item() == pytest.approx(loss_x / 2, rel=1e-5)
    assert losses['unsup_loss_s1'].item() == pytest.approx(loss_s1 / 8, rel=1e-5)
    assert losses['unsup_loss_fp'].item() == pytest.approx(loss_fp / 4, rel=1e-5)
    # The box really changed the labels somewhere, so the check above is not vacuous.
    assert not torch.equal(logits['mix'][0, :, 1:3, 1:4].argmax(0),
                           logits['u_w'][0, :, 1:3, 1:4].argmax(0))


@pytest.mark.parametrize('h, w', [(64, 64), (48, 96)])
def test_cutmix_boxes_respect_area_and_ratio(h, w):
    g = torch.Generator().manual_seed(1)
    empty = 0
    for _ in range(400):
        box = cutmix_box(h, w, p=0.5, generator=g)
        if not box.any():
            empty += 1
            continue
        ys, xs = box.nonzero(as_tuple=True)
        bh, bw = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert box.sum() == bh * bw  # one rectangle
        area = bh * bw / (h * w)
        assert area <= 0.4
        # int() truncation of each side costs at most one row and one column.
        assert (bh + 1) * (bw + 1) / (h * w) >= 0.02
        # The drawn ratio r = h / w lies in [0.3, 1/0.3]; truncation gives bh <= h < bh + 1.
        assert (bh + 1) / bw > 0.3 and bh / (bw + 1) < 1 / 0.3
    assert 150 < empty < 250  # p = 0.5


def test_feature_perturbation_only_in_training_and_only_on_the_weak_view():
    model = build_unimatch(conf_thresh=0.0)
    seen = []
    model.feature_perturbation.register_forward_hook(
        lambda m, inp, out: seen.append((inp[0].shape[0], m.training)))
    g = torch.Generator().manual_seed(0)
    imgs = {k: torch.randn(n, 3, 32, 32, generator=g)
            for k, n in (('sup', 2), ('unsup_weak', 4), ('unsup_strong1', 4),
                         ('unsup_strong2', 4))}
    maps = {k: samples(torch.zeros(v.shape[0], 32, 32, dtype=torch.long))
            for k, v in imgs.items()}
    model.train()
    model.loss(imgs, maps)
    # Once per level the head reads (c1 and c4), on cat(labeled, weak unlabeled) = 2 + 2
    # images, in train mode; never on the strong views (4 images) or the mix batch.
    assert seen and all(n == 4 and training for n, training in seen)
    assert len(seen) == 2

    seen.clear()
    model.eval()
    with torch.no_grad():
        model.predict(imgs['sup'], samples(torch.zeros(2, 32, 32, dtype=torch.long)))
    assert seen == []


def test_plain_segmentor_checkpoint_loads_into_student_and_teacher():
    net_cfg = Config.fromfile(DEMO_CONFIG).model
    plain = MODELS.build(net_cfg)
    semi = MODELS.build(dict(type='UniMatch', segmentor=net_cfg,
                             semi_train_cfg=dict(ema_teacher=True)))
    semi.load_state_dict(plain.state_dict())
    for name, value in plain.state_dict().items():
        assert torch.equal(semi.student.state_dict()[name], value)
        assert torch.equal(semi.teacher.state_dict()[name], value)


def test_odd_unlabeled_batch_is_refused():
    model = build_unimatch()
    imgs = dict(sup=torch.zeros(1, 3, 8, 8), unsup_weak=torch.zeros(3, 3, 8, 8),
                unsup_strong1=torch.zeros(3, 3, 8, 8), unsup_strong2=torch.zeros(3, 3, 8, 8))
    maps = {k: samples(torch.zeros(v.shape[0], 8, 8, dtype=torch.long)) for k, v in imgs.items()}
    with pytest.raises(ValueError, match='source_ratio'):
        model.loss(imgs, maps)
