"""Bad input fails early with a ValueError that names the problem and the fix."""
import math

import numpy as np
import pytest
import torch

from conformalsam_mmseg.conformal import (ConformalCalibrator, conformal_rank,
                                          filter_pseudo_labels, histogram_quantile,
                                          prediction_sets)


def _batch(classes=3, images=2, height=4, width=5):
    probs = torch.softmax(torch.randn(images, classes, height, width), 1)
    return probs, torch.randint(0, classes, (images, height, width))


@pytest.mark.parametrize('alpha', [0, 1, -0.1, 1.5, math.nan, math.inf, '0.1', True, None])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match=r'alpha must .*\(0, 1\)|alpha must lie strictly'):
        ConformalCalibrator(3, alpha=alpha)
    with pytest.raises(ValueError, match='alpha'):
        conformal_rank(10, alpha)


def test_alpha_per_group():
    with pytest.raises(ValueError, match="one alpha per group needs mode='class'"):
        ConformalCalibrator(3, alpha=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match=r'one per class \(3\), got 2 values'):
        ConformalCalibrator(3, alpha=[0.1, 0.1], mode='class')
    with pytest.raises(ValueError, match='strictly between 0 and 1'):
        ConformalCalibrator(3, alpha=[0.1, 0.0, 0.1], mode='class')
    assert ConformalCalibrator(3, alpha=np.array([0.1, 0.2, 0.3]), mode='class').alpha == [
        0.1, 0.2, 0.3]


def test_probabilities_not_summing_to_one():
    probs, labels = _batch()
    with pytest.raises(ValueError, match='sum to 1.*softmax.*check_probs=False'):
        ConformalCalibrator(3).update(probs * 1.5, labels)
    probs[0, :, 0, 0] = math.nan
    with pytest.raises(ValueError, match='sum to 1'):
        ConformalCalibrator(3).update(probs, labels)
    with pytest.raises(ValueError, match='NaN or infinite scores'):
        ConformalCalibrator(3, check_probs=False).update(probs, labels)
    probs, labels = _batch()
    ConformalCalibrator(3, check_probs=False).update(probs * 1.5, labels)  # SEEM-like: allowed
    ConformalCalibrator(3).update(probs + 3e-4, labels)                     # within tolerance


def test_shape_mismatch():
    probs, labels = _batch()
    calibrator = ConformalCalibrator(3)
    with pytest.raises(ValueError, match=r'do not match labels.*resize the probabilities'):
        calibrator.update(probs, labels[:, :3])
    with pytest.raises(ValueError, match='batch size and H x W must agree'):
        calibrator.update(probs, labels[:1])
    with pytest.raises(ValueError, match='have 3 classes .* num_classes=4'):
        ConformalCalibrator(4).update(probs, labels)
    with pytest.raises(ValueError, match=r'expected \(B, K, H, W\) with labels \(B, H, W\)'):
        calibrator.update(probs[0, 0], labels)
    with pytest.raises(ValueError, match=r'labels must have shape \(B, H, W\) or \(H, W\)'):
        calibrator.update(probs, labels.view(-1))
    with pytest.raises(ValueError, match='floating-point'):
        calibrator.update(labels.unsqueeze(1).expand(2, 3, 4, 5), labels)
    with pytest.raises(ValueError, match=r'integer tensor .*\.long\(\)'):
        calibrator.update(probs, labels.float())


@pytest.mark.parametrize('bad', [3, 7, 254, 256, -1])
def test_label_values_out_of_range(bad):
    probs, labels = _batch()
    labels[1, 2, 3] = bad
    with pytest.raises(ValueError, match=rf'labels hold values \[{bad}\] outside the 3 classes'):
        ConformalCalibrator(3).update(probs, labels)
    labels[1, 2, 3] = 255   # the ignore index is fine
    ConformalCalibrator(3).update(probs, labels)


def test_ignore_index_must_not_be_a_class():
    with pytest.raises(ValueError, match='ignore_index=2 is one of the 3 class indices'):
        ConformalCalibrator(3, ignore_index=2)
    with pytest.raises(ValueError, match='ignore_index=1 is a class index'):
        filter_pseudo_labels(_batch()[0], 0.5, ignore_index=1)


def test_empty_calibration_set():
    calibrator = ConformalCalibrator(3)
    with pytest.raises(ValueError, match='empty calibration set.*update'):
        calibrator.thresholds()
    probs, labels = _batch()
    calibrator.update(probs, torch.full_like(labels, 255))
    with pytest.raises(ValueError, match='empty calibration set.*ignore index 255'):
        calibrator.thresholds()
    for mode, method in (('class', 'exact'), ('image', 'histogram')):
        calibrator = ConformalCalibrator(3, mode=mode, method=method)
        calibrator.update(probs, torch.full_like(labels, 255))
        with pytest.raises(ValueError, match='empty calibration set'):
            calibrator.group_thresholds()


def test_bad_configuration():
    with pytest.raises(ValueError, match="mode must be one of .*'pixel'"):
        ConformalCalibrator(3, mode='pixels')
    with pytest.raises(ValueError, match="method must be one of"):
        ConformalCalibrator(3, method='sort')
    with pytest.raises(ValueError, match='image_aggregation must be one of'):
        ConformalCalibrator(3, mode='image', image_aggregation='max')
    with pytest.raises(ValueError, match='num_bins must be a power of two'):
        ConformalCalibrator(3, num_bins=1000)
    with pytest.raises(ValueError, match='num_classes must be a positive int'):
        ConformalCalibrator(0)
    with pytest.raises(ValueError, match='got 3 alphas for 2 histograms'):
        histogram_quantile(torch.zeros(2, 6, dtype=torch.long), [0.1, 0.1, 0.1])


def test_bad_filtering_input():
    probs, _ = _batch()
    with pytest.raises(ValueError, match='got 2 thresholds for 3 classes'):
        filter_pseudo_labels(probs, [0.5, 0.5])
    with pytest.raises(ValueError, match='thresholds contain NaN'):
        filter_pseudo_labels(probs, math.nan)
    with pytest.raises(ValueError, match="rule must be one of"):
        filter_pseudo_labels(probs, 0.5, rule='majority')
    with pytest.raises(ValueError, match='background_index=3 is not one of the 3 classes.*None'):
        filter_pseudo_labels(probs, 0.5, background_index=3)
    with pytest.raises(ValueError, match=r'shape \(B, K, H, W\) or \(K, H, W\)'):
        filter_pseudo_labels(probs[0, 0], 0.5)
    with pytest.raises(ValueError, match='cannot hold labels up to 255'):
        filter_pseudo_labels(probs, 0.5, dtype=torch.int8)
    with pytest.raises(ValueError, match=r'shape \(B, K, H, W\) or \(K, H, W\)'):
        prediction_sets(probs[0, 0], 0.5)


def test_bad_json(tmp_path):
    path = tmp_path / 'other.json'
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match='not a ConformalCalibrator JSON'):
        ConformalCalibrator.load_json(path)
