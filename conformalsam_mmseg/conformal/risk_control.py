"""Conformal risk control (Angelopoulos, Bates, Fisch, Lei, Schuster, "Conformal Risk Control",
ICLR 2024) for a loss that is non-increasing in the threshold.

With n exchangeable calibration images, per-image losses L_i(t) non-increasing in t and
bounded by B, and R_n(t) = (1/n) sum_i L_i(t), the threshold

    t_hat = inf { t : n / (n + 1) * R_n(t) + B / (n + 1) <= target }

gives E[L_{n+1}(t_hat)] <= target for a fresh exchangeable image. Over a fixed grid
t_0 < ... < t_{T-1} = +inf (L = 0 at +inf) the infimum is the smallest grid point that passes.
The condition is tested in exact rational arithmetic on the (exactly rounded) sum of the
losses: sum_i L_i(t) + B <= target * (n + 1). At +inf it reads B <= target * (n + 1), so with
fewer than n_needed = ceil(B / target) - 1 images nothing passes; t_hat is then +inf (keep
nothing), which the Selection marks as not certified.
"""
import math
from fractions import Fraction

import torch

from .quantile import decimal_fraction
from .risk_procedure import RiskProcedure, Selection


class ConformalRiskControl(RiskProcedure):
    """``select(losses)``: losses (n, T) non-increasing along T, in [0, bound]."""
    name = 'conformal_risk_control'

    def __init__(self, target, bound=1.0):
        super().__init__(target)
        if not 0 < float(bound) <= 1:
            raise ValueError(f'the loss bound B must be in (0, 1], got {bound!r}')
        self.bound = decimal_fraction(bound)

    def n_needed(self):
        """The fewest images with which any threshold passes: B / (n + 1) <= target."""
        return max(0, math.ceil(self.bound / self.target_fraction) - 1)

    def passes(self, loss_sum, n):
        """The CRC condition for a threshold whose losses sum to ``loss_sum`` over n images."""
        return Fraction(loss_sum) + self.bound <= self.target_fraction * (n + 1)

    def select(self, losses):
        losses = self._check_losses(losses)
        n, count = losses.shape
        if n and (losses[:, 1:] > losses[:, :-1]).any():
            raise ValueError(
                'conformal risk control needs losses non-increasing in the threshold; '
                "'false_label_rate' is not monotone: calibrate it with Learn-then-Test")
        sums = self._column_sums(losses)
        index = count - 1
        certified = self.passes(sums[-1], n)
        if certified:
            # the smallest j from which every stricter threshold passes (the passing set is
            # an up-set for monotone losses; this also holds when sums tie to the last bit)
            while index > 0 and self.passes(sums[index - 1], n):
                index -= 1
        risk = torch.tensor(sums, dtype=torch.float64) / max(n, 1)
        return Selection(index=index, certified=certified, n=n, n_needed=self.n_needed(),
                         risk=risk)
