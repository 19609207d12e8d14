"""Conformal risk control and Learn-then-Test against their definitions: known values, hand
answers, and a brute-force computation from the pixels, with and without binning."""
import math

import numpy as np
import pytest
import torch

from conformalsam_mmseg.conformal import (ConformalRiskControl, LearnThenTest,
                                          RiskCalibrator, hoeffding_bentkus_interval,
                                          hoeffding_bentkus_pvalue, threshold_grid)
from conformalsam_mmseg.conformal.learn_then_test import binomial_cdf, h1

from risk_synthetic import (as_probs_and_labels, crc_passes, draw_images,
                             hb_pvalue_reference, per_image_losses)


def test_h1_and_binomial_cdf_known_values():
    assert h1(0.0, 0.1) == pytest.approx(-math.log(0.9), rel=1e-15)
    assert h1(0.1, 0.1) == 0.0
    assert h1(1.0, 0.5) == pytest.approx(math.log(2), rel=1e-15)
    # 0.05 log(1/2) + 0.95 log(0.95/0.9), by hand: 0.051363...
    assert h1(0.05, 0.1) == pytest.approx(0.05 * math.log(0.5) + 0.95 * math.log(0.95 / 0.9))
    assert binomial_cdf(0, 10, 0.1) == pytest.approx(0.9 ** 10, rel=1e-13)
    # P(Bin(100, 0.1) <= 5) = 0.05757688648703..., summed in exact rationals
    assert binomial_cdf(5, 100, 0.1) == pytest.approx(0.0575768864870338, rel=1e-12)
    assert binomial_cdf(100, 100, 0.3) == 1.0 and binomial_cdf(-1, 5, 0.3) == 0.0


@pytest.mark.parametrize('risk_hat,n,target', [
    (0.0, 10, 0.1), (0.05, 100, 0.1), (0.02, 46, 0.05), (0.3, 50, 0.1), (0.1, 200, 0.1),
    (1 / 60, 30, 0.1), (0.001, 1000, 0.02)])
def test_hoeffding_bentkus_pvalue_against_definition(risk_hat, n, target):
    p = hoeffding_bentkus_pvalue(risk_hat, n, target)
    assert p == pytest.approx(min(1.0, hb_pvalue_reference(risk_hat, n, target)), rel=1e-10)


def test_hoeffding_bentkus_pvalue_known_numbers():
    # zero observed risk: min((1 - a)^n, e (1 - a)^n) = (1 - a)^n
    assert hoeffding_bentkus_pvalue(0.0, 10, 0.1) == pytest.approx(0.9 ** 10, rel=1e-13)
    # n = 100, R = 0.05, a = 0.1: Hoeffding exp(-100 h1(0.05, 0.1)) = 0.188125, Bentkus
    # e * P(Bin(100, 0.1) <= 5) = e * 0.0575769 = 0.156510: the smaller one
    assert hoeffding_bentkus_pvalue(0.05, 100, 0.1) == pytest.approx(0.1565102043, rel=1e-9)
    assert hoeffding_bentkus_pvalue(0.2, 100, 0.1) == 1.0     # risk above target: no evidence


def test_interval_contains_estimate_and_narrows():
    lo, hi = hoeffding_bentkus_interval(0.1, 100, 0.1)
    assert 0 < lo < 0.1 < hi < 0.3
    lo2, hi2 = hoeffding_bentkus_interval(0.1, 10000, 0.1)
    assert lo < lo2 < 0.1 < hi2 < hi
    # the upper bound is where the p-value of "risk > hi" reaches delta / 2
    assert hoeffding_bentkus_pvalue(0.1, 100, hi) == pytest.approx(0.05, rel=1e-6)


def test_interval_of_a_tiny_risk():
    # the lower bound bisects up to r = 1 - tiny, where h1(a, 1) is infinite, not a division
    # by zero (a per-image mean risk of 1e-12 is an ordinary outcome of risk calibration)
    assert h1(0.5, 1.0) == math.inf and h1(0.5, 0.0) == math.inf and h1(1.0, 1.0) == 0.0
    _, hi_zero = hoeffding_bentkus_interval(0.0, 46, 0.1)
    for risk in (1e-16, 1e-12, 1e-6):
        lo, hi = hoeffding_bentkus_interval(risk, 46, 0.1)
        assert 0.0 <= lo <= risk < hi
        assert hi_zero <= hi < hi_zero + 1e-4   # continuous in the risk
    lo, hi = hoeffding_bentkus_interval(1 - 1e-12, 46, 0.1)
    assert lo == pytest.approx(1 - hi_zero, abs=1e-5) and hi == 1.0


def test_images_needed():
    # CRC: 1 / (n + 1) <= target
    assert ConformalRiskControl(0.05).n_needed() == 19
    assert ConformalRiskControl(0.1).n_needed() == 9
    assert ConformalRiskControl(0.02).n_needed() == 49
    # LTT: (1 - target)^n <= delta; 0.95^45 = 0.0994, 0.95^44 = 0.1047
    assert LearnThenTest(0.05, 0.1).n_needed() == 45
    assert LearnThenTest(0.02, 0.1).n_needed() == 114   # 0.98^114 = 0.0999, 0.98^113 = 0.1020
    assert LearnThenTest(0.1, 0.1).n_needed() == 22     # 0.9^22 = 0.0985, 0.9^21 = 0.1094


def _calibrator(images, risk, target, num_bins, mode='pixel', delta=0.1):
    conf, pred, wrong = images
    cal = RiskCalibrator(3, target, risk=risk, delta=delta, mode=mode, num_bins=num_bins)
    probs, labels = as_probs_and_labels(conf, pred, wrong, 3)
    cal.update(probs, labels)
    return cal


def test_crc_hand_answer():
    # 3 images, target 0.25: n/(n+1) R + 1/(n+1) <= 0.25 needs R = 0, so t must be above the
    # most confident wrong pixel (0.7): the first grid point above it, 0.75 with 4 bins
    conf = np.array([[0.9, 0.7, 0.5], [0.95, 0.6, 0.45], [1.0, 0.8, 0.3]], np.float32)
    wrong = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 1]], bool)
    pred = np.zeros((3, 3), np.int64)
    cal = _calibrator((conf, pred, wrong), 'kept_error', 0.25, num_bins=4)
    assert cal.thresholds().tolist() == [0.75] * 3
    cal = _calibrator((conf, pred, wrong), 'kept_error', 0.2, num_bins=4)   # needs n >= 4
    with pytest.warns(UserWarning, match='3 calibration images, 4 needed'):
        assert math.isinf(cal.thresholds()[0])


def test_ltt_hand_answer():
    # 30 images of 3 right pixels at confidence 0.9; image 0 also has a wrong pixel at 0.8 and
    # image 1 one at 0.5. Target 0.1, delta 0.1, 8 bins. Down to t = 7/8 = 0.875 every image
    # keeps only right pixels: R = 0, p = 0.9^30 = 0.042 <= 0.1. At t = 0.75 image 0 keeps
    # 1 wrong of 4: R = 0.25 / 30, p = min(exp(-30 h1(R, .1)) = 0.1039, e P(Bin(30, .1) <= 1) =
    # 0.499) = 0.1039 > 0.1: the sequence stops, t = 0.875.
    conf = np.full((30, 4), 0.9, np.float32)
    wrong = np.zeros((30, 4), bool)
    conf[0, 3], wrong[0, 3] = 0.8, True
    conf[1, 3], wrong[1, 3] = 0.5, True
    pred = np.zeros((30, 4), np.int64)
    cal = _calibrator((conf, pred, wrong), 'false_label_rate', 0.1, num_bins=8)
    selection, _ = cal.group_selection()
    assert cal.thresholds().tolist() == [0.875] * 3
    p_stop = dict(selection.tested)[6]
    assert p_stop == pytest.approx(hb_pvalue_reference(0.25 / 30, 30, 0.1), rel=1e-10)
    assert p_stop == pytest.approx(0.1039034423, rel=1e-8)
    assert p_stop > 0.1 and dict(selection.tested)[7] == pytest.approx(0.9 ** 30)


def _unbinned(images):
    conf, pred, wrong = images
    return [c for c in conf], [p for p in pred], [w for w in wrong]


@pytest.mark.parametrize('risk', ['kept_error', 'false_label_rate'])
@pytest.mark.parametrize('group', [None, 0, 2])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_binned_risks_equal_brute_force_at_every_grid_threshold(risk, group, seed):
    rng = np.random.default_rng(seed)
    images = draw_images(rng, 40, 30, slope=[0.3, 0.6, 1.5], absent=[0, 0.3, 0.5])
    conf = images[0]
    conf[0, :4] = [0.5, 0.75, 1.0, 0.625]           # confidences exactly on bin edges
    cal = _calibrator(images, risk, 0.1, num_bins=16, mode='class')
    labeled, kept, wrong = cal.histogram.counts(group)
    losses = cal.loss_fn(labeled, kept, wrong)
    grid = threshold_grid(16).tolist()
    expected = per_image_losses(*_unbinned(images), grid, risk, group)
    assert losses.tolist() == expected


def _exact_thresholds(images, risk, group, target, delta):
    """The procedures over every real threshold, from the pixels: candidate thresholds are the
    distinct calibration confidences (each gives a distinct kept set) and +inf."""
    unbinned = _unbinned(images)
    values = sorted({float(v) for c, p in zip(unbinned[0], unbinned[1])
                     for v in (c if group is None else c[p == group])}) + [math.inf]
    losses = np.array(per_image_losses(*unbinned, values, risk, group))
    n = losses.shape[0]
    if risk == 'kept_error':
        passing = [crc_passes(losses[:, j].tolist(), target) for j in range(len(values))]
        failing = [v for v, ok in zip(values, passing) if not ok]
        t_star = min(v for v, ok in zip(values, passing) if ok)
        return t_star, (max(failing) if failing else -math.inf)
    t_star = math.inf
    for j in range(len(values) - 2, -1, -1):
        risk_hat = math.fsum(losses[:, j].tolist()) / n
        if hb_pvalue_reference(risk_hat, n, target) > delta:
            break
        t_star = values[j]
    return t_star, None


@pytest.mark.parametrize('risk', ['kept_error', 'false_label_rate'])
@pytest.mark.parametrize('num_bins', [8, 64, 1024])
@pytest.mark.parametrize('seed', range(3))
def test_binned_threshold_within_one_bin_of_exact(risk, num_bins, seed):
    rng = np.random.default_rng(100 + seed)
    images = draw_images(rng, 60, 25, slope=[0.2, 0.5, 1.0], absent=[0, 0.2, 0.4])
    target, delta = 0.1, 0.1
    cal = _calibrator(images, risk, target, num_bins, mode='class', delta=delta)
    result = cal.calibrate(warn=False)
    grid = threshold_grid(num_bins).tolist()
    for group, row in zip([None, 0, 1, 2], result.groups):
        if not row.source.startswith(('calibrated', 'keep_nothing')):
            continue
        t_bin = row.threshold
        t_star, t_fail = _exact_thresholds(images, risk, group, target, delta)
        # never more than one bin stricter than the exact threshold ...
        upper = math.inf if math.isinf(t_star) else math.ceil(t_star * num_bins) / num_bins
        assert t_bin <= upper, (group, t_bin, t_star)
        if risk == 'kept_error':
            # ... never below the infimum of the thresholds the exact procedure certifies ...
            assert t_bin > t_fail
            # ... and certified by the exact condition itself
            losses = per_image_losses(*_unbinned(images), [t_bin], risk, group)
            assert crc_passes([r[0] for r in losses], target)
        # the binned choice is the procedure run on the grid, from the pixels
        losses = np.array(per_image_losses(*_unbinned(images), grid, risk, group))
        assert row.n == losses.shape[0]
        if risk == 'kept_error':
            ok = [crc_passes(losses[:, j].tolist(), target) for j in range(len(grid))]
            expected = grid[min(j for j in range(len(grid)) if all(ok[j:]))]
        else:
            expected = math.inf
            for j in range(len(grid) - 2, -1, -1):
                p = hb_pvalue_reference(math.fsum(losses[:, j].tolist()) / row.n, row.n, target)
                if p > delta:
                    break
                expected = grid[j]
        assert t_bin == expected
        assert row.kept_ratio == pytest.approx(
            sum(int(((c >= t_bin) & (p == group if group is not None else True)).sum())
                for c, p in zip(images[0], images[1]))
            / sum(int((p == group).sum()) if group is not None else p.size
                  for p in images[1]))


def test_crc_rejects_non_monotone_losses():
    losses = torch.tensor([[0.2, 0.3, 0.0], [0.1, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match='non-increasing'):
        ConformalRiskControl(0.1).select(losses)
