"""The coverage guarantee on synthetic exchangeable pixels, checked on a fresh held-out draw.

Split conformal prediction promises P(y in C(x)) >= 1 - alpha for a fresh pixel exchangeable
with the calibration pixels: overall in 'pixel' mode, for every class in 'class' mode.
"""
import pytest

from conformal_synthetic import coverage, synthetic_pixels
from conformalsam_mmseg.conformal import ConformalCalibrator, prediction_sets

# a rare class (1% of pixels) on which the annotator is poor
PRIORS = [0.45, 0.3, 0.24, 0.01]
STRENGTHS = [3.0, 2.5, 2.0, 0.0]
PIXELS = 400_000


def _calibrate_and_test(mode, alpha, method='histogram', score='lac'):
    probs, labels = synthetic_pixels(PIXELS, PRIORS, STRENGTHS, seed=0)
    calibrator = ConformalCalibrator(4, alpha=alpha, mode=mode, method=method, score=score)
    calibrator.update(probs, labels)
    test_probs, test_labels = synthetic_pixels(PIXELS, PRIORS, STRENGTHS, seed=1)
    sets = prediction_sets(test_probs, calibrator.thresholds(), score=score)
    return coverage(sets, test_labels)


@pytest.mark.parametrize('alpha', [0.05, 0.1])
@pytest.mark.parametrize('score', ['lac', 'aps'])
def test_pixel_mode_covers_overall(alpha, score):
    overall, _ = _calibrate_and_test('pixel', alpha, score=score)
    assert overall >= 1 - alpha - 0.01
    assert overall <= 1 - alpha + 0.01   # and is not trivially conservative


@pytest.mark.parametrize('method', ['histogram', 'exact'])
def test_class_mode_covers_every_class(method):
    alpha = 0.05
    overall, per_class = _calibrate_and_test('class', alpha, method=method)
    assert overall >= 1 - alpha - 0.01
    for k, cov in per_class.items():   # every class has >= 4000 calibration pixels here
        assert cov >= 1 - alpha - 0.01, (k, cov)


def test_pixel_mode_under_covers_a_rare_class_that_class_mode_covers():
    alpha = 0.05
    _, pixel = _calibrate_and_test('pixel', alpha)
    _, mondrian = _calibrate_and_test('class', alpha)
    rare = 3
    assert pixel[rare] < 1 - alpha - 0.1      # far below the target ...
    assert mondrian[rare] >= 1 - alpha - 0.01  # ... which class mode meets
