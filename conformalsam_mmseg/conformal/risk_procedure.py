"""What a risk calibration procedure takes and returns.

A procedure (:class:`.ConformalRiskControl`, :class:`.LearnThenTest`) sees the (n, T) matrix
of per-image losses L_i(t_j) over the candidate thresholds t_0 < ... < t_{T-1} = +inf (the
last keeps nothing, so its loss is 0) and picks an index j. It is the "predictor" of the
calibration; the per-image histograms (:class:`.ConfidenceHistogram`) and the risk functions
(:mod:`.risks`) are its "score".
"""
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from .inputs import check_open_unit


@dataclass
class Selection:
    """The outcome of a procedure on one group of calibration images.

    index: the chosen j (T - 1, i.e. t = +inf, is 'keep nothing').
    certified: whether the procedure's guarantee holds at j with the data it had; False when
        even the strictest threshold could not be certified (then j = T - 1: keep nothing).
    n: calibration images; n_needed: the fewest images with which the procedure can certify
        anything at all (with zero observed risk).
    risk: R_n(t_j) for every j, (T,) float64 (the mean per-image loss).
    tested: for Learn-then-Test, the (j, p-value) pairs tested in order.
    """
    index: int
    certified: bool
    n: int
    n_needed: int
    risk: torch.Tensor
    tested: list = field(default_factory=list)

    @property
    def keeps_nothing(self):
        return self.index == len(self.risk) - 1


class RiskProcedure(ABC):
    """Base: ``select(losses) -> Selection``; ``target`` is the tolerated risk in (0, 1)."""
    name = None

    def __init__(self, target):
        self.target = check_open_unit(
            'target_error', target, 'the tolerated error of the kept labels, e.g. 0.05')
        self.target_fraction = Fraction(repr(self.target))

    @abstractmethod
    def n_needed(self):
        """The fewest calibration images with which anything can be certified."""

    @abstractmethod
    def select(self, losses):
        """The chosen threshold index for the (n, T) per-image losses, as a ``Selection``."""

    @staticmethod
    def _check_losses(losses):
        losses = torch.as_tensor(losses, dtype=torch.float64)
        if losses.dim() != 2 or losses.shape[1] < 1:
            raise ValueError(f'losses must be (n images, T thresholds), got {tuple(losses.shape)}')
        if losses.numel() and not ((losses >= 0) & (losses <= 1)).all():
            raise ValueError('losses must lie in [0, 1] (NaN is not allowed)')
        if losses.numel() and (losses[:, -1] != 0).any():
            raise ValueError('the last threshold must keep nothing (loss 0 for every image)')
        return losses

    @staticmethod
    def _column_sums(losses):
        """sum_i L_i(t_j) per j, exactly rounded (independent of the order of the images)."""
        return [math.fsum(column) for column in losses.t().tolist()]
