"""Conformal core of ConformalSAM: calibrate the annotator on labeled pixels, filter its labels.

Pure torch + numpy: imports nothing from mmseg, mmengine or mmcv, so it can be used alone::

    from conformalsam_mmseg.conformal import ConformalCalibrator, filter_pseudo_labels

    calibrator = ConformalCalibrator(num_classes=21, alpha=0.05)   # 'pixel' mode, LAC score
    for probs, labels in labeled_batches:     # (B, K, H, W) softmax, (B, H, W) with 255 = ignore
        calibrator.update(probs, labels)
    q = calibrator.thresholds()               # (K,): class k is in C(x) when 1 - p_k(x) <= q_k
    pseudo = filter_pseudo_labels(probs_u, q) # (B, H, W) uint8, rejected pixels = 255

See docs/conformal.md for the modes, the set-to-label rules and the JSON format.
"""
from .calibrator import ConformalCalibrator
from .filtering import RULES, filter_pseudo_labels, prediction_sets
from .inputs import IGNORE_INDEX
from .quantile import (DEFAULT_NUM_BINS, conformal_quantile, conformal_rank,
                       histogram_bin_index, histogram_quantile,
                       histogram_upper_edges, min_calibration_size)
from .report import ConformalReport, FilterStats, calibration_report
from .scores import (APS, LAC, SCORES, NonconformityScore, get_score,
                     register_score)

__all__ = [
    'ConformalCalibrator', 'filter_pseudo_labels', 'prediction_sets', 'RULES', 'IGNORE_INDEX',
    'conformal_quantile', 'conformal_rank', 'min_calibration_size', 'histogram_bin_index',
    'histogram_quantile', 'histogram_upper_edges', 'DEFAULT_NUM_BINS', 'calibration_report',
    'ConformalReport', 'FilterStats', 'NonconformityScore', 'LAC', 'APS', 'SCORES',
    'get_score', 'register_score'
]
