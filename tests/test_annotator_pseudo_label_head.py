"""AnnotatorPseudoLabelHead (formerly SEEMPseudoLabelHead): foreground-first labels from cached top-k, statistics, thresholds."""
import math

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from conformalsam_mmseg.annotators.cache import quantize
from conformalsam_mmseg.conformal import filter_pseudo_labels
from conformalsam_mmseg.models.heads import AnnotatorPseudoLabelHead

CLASSES = ['background', 'cat', 'dog', 'car']


def _hand_probs():
    """(1, 4, 2, 3) probabilities, multiples of 1/255 so the cache stores them exactly."""
    v = [  # per pixel: background, cat, dog, car   (row-major over the 2 x 3 pixels)
        [200, 40, 10, 5],     # only background passes 0.3 -> background
        [100, 120, 30, 5],    # {background, cat} -> cat (foreground first)
        [10, 10, 10, 225],    # {car} -> car
        [70, 65, 60, 60],     # nothing passes -> rejected
        [79, 95, 78, 3],      # {background, cat, dog} -> cat (most probable foreground)
        [150, 5, 0, 100],     # {background, car} -> car (background is top-1)
    ]
    p = torch.tensor(v, dtype=torch.float32).t().reshape(1, 4, 2, 3) / 255
    torch.testing.assert_close(p.sum(1), torch.ones(1, 2, 3))
    return p


EXPECTED = torch.tensor([[[0, 1, 3], [255, 1, 3]]])
Q = 0.7  # LAC: class k in C(x) when 1 - p_k <= 0.7, i.e. p_k >= 0.3 (76.5 / 255)


def _samples(probs, topk, pad_cols=0):
    """Data samples as PackAnnotatorOutput makes them, from dense probabilities."""
    samples = []
    for p in probs:
        values, index = torch.topk(p, topk, dim=0)
        index = index.to(torch.uint8)
        prob = torch.from_numpy(quantize(values))
        if pad_cols:
            index = torch.cat([index, torch.full((topk, p.shape[1], pad_cols), 255,
                                                 dtype=torch.uint8)], dim=2)
            prob = torch.cat([prob, torch.full_like(index[..., -pad_cols:], 255)], dim=2)
        s = SegDataSample()
        s.set_data(dict(annotator_topk_index=PixelData(data=index),
                        annotator_topk_prob=PixelData(data=prob)))
        samples.append(s)
    return samples


def test_registered_parameter_free_and_thresholds_in_state_dict():
    head = MODELS.build(dict(type='AnnotatorPseudoLabelHead', num_classes=4, classes=CLASSES))
    assert isinstance(head, AnnotatorPseudoLabelHead)
    assert list(head.parameters()) == []
    assert head.rule == 'foreground_first' and head.score == 'lac'
    assert head.background_index == 0
    state = head.state_dict()
    assert list(state) == ['thresholds'] and torch.isnan(state['thresholds']).all()
    head.set_thresholds(torch.tensor([0.9, 0.8, 0.7, 0.6]))
    other = AnnotatorPseudoLabelHead(4)
    assert not other.is_calibrated
    other.load_state_dict(head.state_dict())
    assert other.is_calibrated
    assert other.thresholds.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])
    # as a submodule, the buffer is in the model's checkpoint
    model = torch.nn.Module()
    model.pseudo_label_head = head
    assert 'pseudo_label_head.thresholds' in model.state_dict()


def test_raises_before_calibration():
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES)
    with pytest.raises(RuntimeError, match='calibration has not run'):
        head(_hand_probs())
    with pytest.raises(RuntimeError, match='calibration has not run'):
        head(_samples(_hand_probs(), 2))
    with pytest.raises(ValueError, match='NaN'):
        head.set_thresholds([0.5, math.nan, 0.5, 0.5])
    with pytest.raises(ValueError, match='3 thresholds for 4'):
        head.set_thresholds([0.5, 0.5, 0.5])


def test_foreground_first_labels_and_kept_ratios_from_probabilities():
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES)
    head.set_thresholds(Q)
    labels, stats = head(_hand_probs())
    assert labels.dtype == torch.long and torch.equal(labels, EXPECTED)
    assert torch.equal(labels, filter_pseudo_labels(_hand_probs(), [Q] * 4).long())
    # annotator top-1: background, cat, car, background, cat, background
    assert stats == {
        'pseudo_kept_ratio': 5 / 6,
        'pseudo_kept_ratio/background': 2 / 3,
        'pseudo_kept_ratio/cat': 1.0,
        'pseudo_kept_ratio/car': 1.0,
    }


@pytest.mark.parametrize('topk', [2, 3, 4])
def test_same_labels_from_cached_topk(topk):
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES)
    head.set_thresholds(Q)
    probs = _hand_probs()
    labels, stats = head(_samples(probs, topk))
    assert torch.equal(labels, EXPECTED)
    assert stats['pseudo_kept_ratio'] == 5 / 6
    dense, valid = head.probabilities(_samples(probs, topk))
    assert valid.all() and dense.shape == (1, 4, 2, 3)
    kept = torch.zeros_like(probs).scatter_(1, probs.topk(topk, 1).indices,
                                            probs.topk(topk, 1).values)
    torch.testing.assert_close(dense, kept, rtol=0, atol=1e-6)


def test_topk_one_drops_classes_outside_it():
    # with k = 1 the set holds at most the top class: the pixel whose set was
    # {background, car} (background top-1) becomes background
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES)
    head.set_thresholds(Q)
    labels, _ = head(_samples(_hand_probs(), 1))
    assert labels.tolist() == [[[0, 1, 3], [255, 1, 0]]]


def test_padded_pixels_are_rejected_and_not_counted():
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES)
    head.set_thresholds(Q)
    probs = torch.cat([_hand_probs(), _hand_probs().flip(3)])
    labels, stats = head(_samples(probs, 2, pad_cols=2))
    assert labels.shape == (2, 2, 5)
    assert (labels[:, :, 3:] == 255).all()
    assert torch.equal(labels[0, :, :3], EXPECTED[0])
    assert torch.equal(labels[1, :, :3], EXPECTED[0].flip(1))
    assert stats['pseudo_kept_ratio'] == 10 / 12
    assert stats['pseudo_kept_ratio/background'] == 4 / 6
    # the same through a tensor and a valid mask
    dense = torch.nn.functional.pad(probs, (0, 2))
    valid = torch.ones(2, 2, 5, dtype=torch.bool)
    valid[..., 3:] = False
    labels2, stats2 = head(dense, valid_mask=valid)
    assert torch.equal(labels2, labels) and stats2 == stats


def test_rules_background_and_per_class_thresholds():
    probs = _hand_probs()
    # no background class: the most probable class of the set
    head = AnnotatorPseudoLabelHead(4, background_index=None, per_class_stats=False)
    head.set_thresholds(Q)
    labels, stats = head(probs)
    assert labels.tolist() == [[[0, 1, 3], [255, 1, 0]]]
    assert list(stats) == ['pseudo_kept_ratio']
    head = AnnotatorPseudoLabelHead(4, rule='singleton', stats_prefix='sam_')
    head.set_thresholds(Q)
    labels, stats = head(probs)
    assert labels.tolist() == [[[0, 255, 3], [255, 255, 255]]]
    assert stats['sam_kept_ratio'] == 2 / 6
    # per-class q: background needs p >= 0.9 now (q_0 = 0.1)
    head = AnnotatorPseudoLabelHead(4)
    head.set_thresholds([0.1, Q, Q, Q])
    labels, _ = head(probs)
    assert labels.tolist() == [[[255, 1, 3], [255, 1, 3]]]
    with pytest.raises(ValueError, match='rule'):
        AnnotatorPseudoLabelHead(4, rule='majority')


def test_batch_of_different_sizes_is_refused():
    head = AnnotatorPseudoLabelHead(4)
    head.set_thresholds(Q)
    samples = _samples(_hand_probs(), 2) + _samples(_hand_probs()[..., :2], 2)
    with pytest.raises(ValueError, match='PadSegFields'):
        head(samples)


def test_larger_batch_matches_the_filter():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(3, 6, 17, 23)).astype(np.float32)) * 2
    probs = logits.softmax(1)
    head = AnnotatorPseudoLabelHead(6)
    q = torch.tensor([0.6, 0.7, 0.8, 0.65, 0.75, 0.9], dtype=torch.float64)
    head.set_thresholds(q)
    labels, stats = head(probs)
    expected = filter_pseudo_labels(probs, q).long()
    assert torch.equal(labels, expected)
    assert stats['pseudo_kept_ratio'] == pytest.approx(float((expected != 255).float().mean()))


def test_the_former_name_still_builds_the_head():
    from conformalsam_mmseg.models.heads import SEEMPseudoLabelHead
    head = MODELS.build(dict(type='SEEMPseudoLabelHead', num_classes=4, classes=CLASSES))
    assert type(head) is AnnotatorPseudoLabelHead
    assert SEEMPseudoLabelHead is AnnotatorPseudoLabelHead
    assert MODELS.get('AnnotatorPseudoLabelHead') is AnnotatorPseudoLabelHead


def test_the_filter_runs_where_the_batch_is_by_default_and_on_the_cpu_when_asked(monkeypatch):
    import conformalsam_mmseg.models.heads.annotator_pseudo_label_head as module
    seen = []
    real = module.topk_to_dense
    monkeypatch.setattr(module, 'topk_to_dense', lambda index, prob, *a, **k: seen.append(
        (index.device, prob.dtype)) or real(index, prob, *a, **k))
    samples = _samples(_hand_probs(), 4)
    out = {}
    for device in (None, 'cpu'):
        head = AnnotatorPseudoLabelHead(4, classes=CLASSES, filter_device=device,
                                        thresholds=Q)
        out[device] = head(samples)
    assert AnnotatorPseudoLabelHead(4).filter_device is None
    assert torch.equal(out[None][0], EXPECTED) and torch.equal(out['cpu'][0], EXPECTED)
    assert out[None][1] == out['cpu'][1]
    assert seen == [(torch.device('cpu'), torch.uint8)] * 2
    # 'meta' stands for a device the batch is not on: the head moves the top-k there
    seen.clear()
    head = AnnotatorPseudoLabelHead(4, classes=CLASSES, filter_device='meta', thresholds=Q)
    with pytest.raises(Exception):
        head(samples)
    assert seen and seen[0][0] == torch.device('meta')


def test_a_filter_device_that_is_not_a_device_is_refused_by_name():
    with pytest.raises(ValueError, match=r"filter_device='gpu' is not a device: use None"):
        AnnotatorPseudoLabelHead(4, filter_device='gpu')
    assert AnnotatorPseudoLabelHead(4, filter_device='cpu').filter_device == 'cpu'
