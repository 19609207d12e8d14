"""Pixel-wise calibration, the paper's main setting (``mode='pixel'``): all labeled pixels
pooled into one calibration set, one q for every class.

Coverage P(y in C(x)) >= 1 - alpha then holds on average over pixels, not for each class.
"""
from .calibration_procedure import GroupedCalibration


class PixelWiseCalibration(GroupedCalibration):
    """One group; ``alphas`` is a one-element list."""
    mode = 'pixel'

    def group_of(self, labels):
        return None

    def thresholds(self):
        return self.group_thresholds().expand(self.num_classes).clone()

    def group_names(self, class_names=None):
        return ['all pixels']
