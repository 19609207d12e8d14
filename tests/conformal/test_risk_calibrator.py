"""RiskCalibrator: bad input, 'keep nothing' outcomes, the class fallback, merging, and the
confidence label rule."""
import math

import numpy as np
import pytest
import torch

from conformalsam_mmseg.conformal import (ConfidenceHistogram, RiskCalibrator,
                                          annotator_argmax, confidence_pseudo_labels)

from risk_synthetic import as_probs_and_labels, draw_images


def _images(seed=0, images=50, predicted=3):
    """3-class probabilities whose argmax is one of the first ``predicted`` classes."""
    rng = np.random.default_rng(seed)
    slope, absent = [0.3, 0.6, 1.0][:predicted], [0, 0.2, 0.5][:predicted]
    return as_probs_and_labels(*draw_images(rng, images, 20, slope, absent), 3)


@pytest.mark.parametrize('value', [0, 1, -0.1, 1.5, float('nan'), 'a', None, True])
def test_target_and_delta_outside_unit_interval(value):
    with pytest.raises(ValueError, match='target_error'):
        RiskCalibrator(3, target_error=value)
    with pytest.raises(ValueError, match='delta'):
        RiskCalibrator(3, target_error=0.05, delta=value)


def test_unknown_options():
    with pytest.raises(ValueError, match='risk must be one of'):
        RiskCalibrator(3, risk='coverage')
    with pytest.raises(ValueError, match='mode must be one of'):
        RiskCalibrator(3, mode='image')
    with pytest.raises(ValueError, match='fallback'):
        RiskCalibrator(3, mode='class', fallback='global')
    with pytest.raises(ValueError, match='power of two'):
        RiskCalibrator(3, num_bins=1000)


def test_empty_calibration_set_is_an_error():
    cal = RiskCalibrator(3)
    with pytest.raises(ValueError, match='empty calibration set'):
        cal.thresholds()
    probs, labels = _images(images=2)
    cal.update(probs, torch.full_like(labels, 255))
    assert cal.histogram.skipped == 2
    with pytest.raises(ValueError, match='empty calibration set'):
        cal.thresholds()


@pytest.mark.parametrize('risk,needed', [('false_label_rate', 45), ('kept_error', 19)])
def test_too_few_images_keep_nothing_with_a_warning(risk, needed):
    probs, labels = _images(images=10)
    cal = RiskCalibrator(3, target_error=0.05, risk=risk)
    cal.update(probs, labels)
    with pytest.warns(UserWarning, match=f'only 10 calibration images, {needed} needed'):
        result = cal.calibrate()
    assert torch.isinf(result.thresholds).all()
    assert result.groups[0].source == 'keep_nothing' and result.groups[0].kept_ratio == 0
    assert (confidence_pseudo_labels(probs, result.thresholds) == 255).all()


def test_strictest_threshold_failing_keeps_nothing():
    # every label wrong, even the most confident: nothing can be certified
    probs, labels = _images(images=60)
    labels = (probs.argmax(1) + 1) % 3
    probs[:, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])   # confidence 1 in the top bin, wrong
    labels[:, 0, 0] = 1
    cal = RiskCalibrator(3, target_error=0.1)
    cal.update(probs, labels)
    with pytest.warns(UserWarning, match='even the strictest threshold fails'):
        assert torch.isinf(cal.thresholds()).all()


@pytest.mark.parametrize('fallback', ['pooled', 'keep_nothing'])
def test_class_with_too_few_images_gets_the_fallback(fallback):
    probs, labels = _images(predicted=2)          # class 2 is predicted nowhere ...
    probs[:3, 2, 0, :2], probs[:3, 0, 0, :2], probs[:3, 1, 0, :2] = 0.9, 0.05, 0.05
    labels[:3, 0, :2] = 2                         # ... but in 3 images
    cal = RiskCalibrator(3, target_error=0.1, mode='class', fallback=fallback)
    cal.update(probs, labels)
    with pytest.warns(UserWarning, match='class 2: 3 calibration images, but .* needs at least 22'):
        result = cal.calibrate()
    pooled, row = result.groups[0], result.groups[3]
    assert row.n == 3 and row.n_needed == 22 and not row.certified
    expected = pooled.threshold if fallback == 'pooled' else math.inf
    assert result.thresholds[2] == expected
    assert [g.source for g in result.groups[1:3]] == ['calibrated'] * 2
    assert 'class 2' in result.table() and 'fallback' in result.table()


def test_merged_histograms_equal_one_histogram():
    probs, labels = _images(seed=3)
    whole = RiskCalibrator(3, target_error=0.1, mode='class')
    whole.update(probs, labels)
    parts = [RiskCalibrator(3, target_error=0.1, mode='class') for _ in range(3)]
    for i, part in enumerate(parts):
        order = list(range(i, len(probs), 3))[::-1]          # another order, too
        part.update(probs[order], labels[order])
    merged = parts[2]
    merged.histogram.merge(parts[0].histogram).merge(parts[1].histogram)
    a, b = whole.calibrate(warn=False), merged.calibrate(warn=False)
    assert torch.equal(a.thresholds, b.thresholds)
    assert [g.__dict__ for g in a.groups] == [g.__dict__ for g in b.groups]
    state = ConfidenceHistogram(3)
    state.load_state_dict(torch.load(_saved(merged.histogram.state_dict()), weights_only=True))
    assert state.num_images == whole.histogram.num_images


def _saved(state):
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def test_histogram_memory_does_not_grow_with_pixels():
    small, large = ConfidenceHistogram(3, num_bins=64), ConfidenceHistogram(3, num_bins=64)
    probs = torch.softmax(torch.randn(1, 3, 4, 4), 1)
    small.update(probs, probs.argmax(1))
    big = torch.nn.functional.interpolate(probs, size=(256, 256))
    large.update(big, big.argmax(1))
    assert all(h.shape[1:] == (65, 2) for _, h in small.records + large.records)
    assert large.records[0][1][..., 0].sum() == 256 * 256


def test_confidence_rule_is_exact_at_the_threshold():
    t = 0.1                                           # not a float32 number
    below = np.nextafter(np.float32(t), np.float32(0))
    above = np.float32(t) if float(np.float32(t)) >= t else np.nextafter(np.float32(t), 1)
    probs = torch.tensor([[float(below), float(above), 0.95, 1.0],
                          [0.0, 0.0, 0.05, 0.0]], dtype=torch.float32).view(1, 2, 1, 4)
    probs[0, 1, 0, :2] = torch.tensor([0.05, 0.05])
    labels = confidence_pseudo_labels(probs, [t, 0.99])
    assert labels.tolist() == [[[255, 0, 0, 0]]]
    assert confidence_pseudo_labels(probs, [math.inf, 0.0]).tolist() == [[[255] * 4]]


def test_confidence_rule_against_definition():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(3, 5, 7, 9, generator=generator), 1)
    probs[0, :, 0, 0] = torch.tensor([0.4, 0.4, 0.2, 0.0, 0.0])   # a tie: the lower class
    t = torch.tensor([0.3, 0.5, 0.2, math.inf, 0.0], dtype=torch.float64)
    conf, pred = annotator_argmax(probs)
    assert pred[0, 0, 0] == 0
    assert torch.equal(pred, probs.argmax(1)) or (pred != probs.argmax(1)).sum() <= 1
    expected = torch.where(conf.double() >= t[pred], pred, torch.full_like(pred, 255))
    assert torch.equal(confidence_pseudo_labels(probs, t).long(), expected)
    assert confidence_pseudo_labels(probs[0], t).shape == (7, 9)
    with pytest.raises(ValueError, match='5 classes'):
        confidence_pseudo_labels(probs, [0.5, 0.5])
    with pytest.raises(ValueError, match='NaN'):
        confidence_pseudo_labels(probs, [math.nan] * 5)
