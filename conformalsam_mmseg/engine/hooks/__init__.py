from .conformal_calibration_hook import ConformalCalibrationHook
from .mean_teacher_hook import MeanTeacherHook
from .self_reliance_hook import SelfRelianceHook

__all__ = ['ConformalCalibrationHook', 'MeanTeacherHook', 'SelfRelianceHook']
