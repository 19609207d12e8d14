"""Conformal core of ConformalSAM: calibrate the annotator on labeled pixels, filter its labels.

Pure torch + numpy: imports nothing from mmseg, mmengine or mmcv, so it can be used alone::

    from conformalsam_mmseg.conformal import ConformalCalibrator, filter_pseudo_labels

    calibrator = ConformalCalibrator(num_classes=21, alpha=0.05)   # 'pixel' mode, LAC score
    for probs, labels in labeled_batches:     # (B, K, H, W) softmax, (B, H, W) with 255 = ignore
        calibrator.update(probs, labels)
    q = calibrator.thresholds()               # (K,): class k is in C(x) when 1 - p_k(x) <= q_k
    pseudo = filter_pseudo_labels(probs_u, q) # (B, H, W) uint8, rejected pixels = 255

Risk-controlled pseudo-labels (the error of the KEPT labels, not set coverage)::

    calibrator = RiskCalibrator(num_classes=21, target_error=0.05)  # Learn-then-Test
    calibrator.update(probs, labels)          # labeled images
    t = calibrator.thresholds()               # (K,) confidence thresholds, +inf = keep nothing
    pseudo = confidence_pseudo_labels(probs_u, t)

The calibrator computes nonconformity scores (:mod:`.scores`) and hands them to one procedure
per mode (:class:`PixelWiseCalibration`, :class:`ClassWiseCalibration`,
:class:`ImageWiseCalibration`) over a score store (:class:`ScoreHistogram` or
:class:`ScoreList`). See docs/conformal.md for the modes, the set-to-label rules and the JSON
format.
"""
from .calibration_procedure import CalibrationProcedure, GroupedCalibration
from .calibrator import ConformalCalibrator
from .class_calibration import ClassWiseCalibration
from .confidence_filter import annotator_argmax, confidence_pseudo_labels
from .confidence_histogram import ConfidenceHistogram, threshold_grid
from .learn_then_test import (LearnThenTest, hoeffding_bentkus_interval,
                              hoeffding_bentkus_pvalue)
from .filtering import RULES, filter_pseudo_labels, prediction_sets
from .image_calibration import ImageWiseCalibration
from .inputs import IGNORE_INDEX
from .pixel_calibration import PixelWiseCalibration
from .quantile import (DEFAULT_NUM_BINS, conformal_quantile, conformal_rank,
                       histogram_bin_index, histogram_quantile,
                       histogram_upper_edges, min_calibration_size)
from .risk_calibrator import RiskCalibration, RiskCalibrator
from .risk_control import ConformalRiskControl
from .risks import RISKS, get_risk
from .report import ConformalReport, FilterStats, calibration_report
from .score_histogram import ScoreHistogram
from .score_list import ScoreList
from .scores import (APS, LAC, SCORES, NonconformityScore, get_score,
                     register_score)

__all__ = [
    'ConformalCalibrator', 'filter_pseudo_labels', 'prediction_sets', 'RULES', 'IGNORE_INDEX',
    'conformal_quantile', 'conformal_rank', 'min_calibration_size', 'histogram_bin_index',
    'histogram_quantile', 'histogram_upper_edges', 'DEFAULT_NUM_BINS', 'calibration_report',
    'ConformalReport', 'FilterStats', 'NonconformityScore', 'LAC', 'APS', 'SCORES',
    'get_score', 'register_score', 'RiskCalibrator', 'RiskCalibration', 'ConfidenceHistogram',
    'threshold_grid', 'ConformalRiskControl', 'LearnThenTest', 'hoeffding_bentkus_pvalue',
    'hoeffding_bentkus_interval', 'confidence_pseudo_labels', 'annotator_argmax', 'RISKS',
    'get_risk', 'CalibrationProcedure', 'GroupedCalibration', 'PixelWiseCalibration',
    'ClassWiseCalibration', 'ImageWiseCalibration', 'ScoreHistogram', 'ScoreList'
]
