"""Class-wise calibration (``mode='class'``, Mondrian conformal prediction by true class, an
extension of the paper): one calibration set per class k, the labeled pixels whose ground truth
is k, and one q_k from it.

Then P(y in C(x) | y = k) >= 1 - alpha_k for every class k, the rare ones included; q_k is the
threshold applied to class k's score at prediction time. A class with fewer than
(1 - alpha_k) / alpha_k calibration pixels gets q_k = +inf.
"""
from .calibration_procedure import GroupedCalibration


class ClassWiseCalibration(GroupedCalibration):
    """K groups; ``alphas`` holds one alpha per class."""
    mode = 'class'

    def group_of(self, labels):
        # ignored pixels are mapped to a class here and left out by the valid mask
        return labels.clamp(0, self.num_classes - 1).cpu()

    def thresholds(self):
        return self.group_thresholds()

    def group_names(self, class_names=None):
        if class_names:
            return list(class_names)
        return [f'class {k}' for k in range(self.num_classes)]
