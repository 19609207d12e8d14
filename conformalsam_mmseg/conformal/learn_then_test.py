"""Learn-then-Test (Angelopoulos, Bates, Candes, Jordan, Lei, "Learn then Test: Calibrating
Predictive Algorithms to Achieve Risk Control", 2021) with Hoeffding-Bentkus p-values and
fixed-sequence testing, for a bounded loss that need not be monotone in the threshold.

For each candidate threshold t the null hypothesis is H_t : R(t) > target, with R(t) the
expected loss of a fresh image. With n exchangeable calibration images and their mean loss
R_hat(t), the Hoeffding-Bentkus p-value (LTT, Prop. 3 / the RCPS paper) is

    p_HB(t) = min( exp(-n h1(min(R_hat, target), target)),
                   e * P(Binomial(n, target) <= ceil(n R_hat)) ),
    h1(a, b) = a log(a / b) + (1 - a) log((1 - a) / (1 - b))          (0 log 0 = 0).

Fixed-sequence testing goes from the strictest threshold (the largest t, fewest kept pixels)
downward and stops at the first p-value > delta; every threshold before it is certified and
the chosen t is the last certified one (the smallest). Then P(R(t_hat) <= target) >= 1 - delta.
If the strictest threshold already fails, the outcome is t = +inf: keep nothing. Even a zero
observed risk needs p_HB = (1 - target)^n <= delta, i.e. n >= n_needed images.
"""
import math

import torch

from .inputs import check_open_unit
from .risk_procedure import RiskProcedure, Selection


def h1(a, b):
    """a log(a/b) + (1 - a) log((1 - a)/(1 - b)), the Kullback-Leibler divergence of
    Bernoulli(a) from Bernoulli(b), with 0 log 0 = 0; +inf where b is 0 or 1 and a is not
    (the p-value exp(-n h1) is then 0: a mean risk a < 1 is impossible under R = 1)."""
    out = 0.0
    if a > 0:
        if b <= 0:
            return math.inf
        out += a * math.log(a / b)
    if a < 1:
        if b >= 1:
            return math.inf
        out += (1 - a) * math.log((1 - a) / (1 - b))
    return out


def binomial_cdf(k, n, p):
    """P(Binomial(n, p) <= k), summed in log space (exactly rounded sum of the terms)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    # log of the i-th term by recurrence: log C(n, i+1) = log C(n, i) + log((n - i) / (i + 1))
    log_odds, log_term, terms = math.log(p) - math.log1p(-p), n * math.log1p(-p), []
    for i in range(k + 1):
        terms.append(math.exp(log_term))
        log_term += math.log((n - i) / (i + 1)) + log_odds
    return min(1.0, math.fsum(terms))


def hoeffding_bentkus_pvalue(risk_hat, n, target, loss_sum=None):
    """p_HB of H: R > target, from the mean loss ``risk_hat`` of n images (losses in [0, 1]).

    ``loss_sum`` (n * risk_hat, if known exactly) is used for ceil(n R_hat)."""
    if n <= 0:
        return 1.0
    risk_hat = min(max(float(risk_hat), 0.0), 1.0)
    hoeffding = math.exp(-n * h1(min(risk_hat, target), target))
    k = math.ceil(n * risk_hat if loss_sum is None else loss_sum)
    if k >= n:
        return min(hoeffding, 1.0)
    bentkus = math.e * binomial_cdf(k, n, target)
    return min(hoeffding, bentkus, 1.0)


def hoeffding_bentkus_upper_bound(risk_hat, n, level):
    """The smallest r with p_HB(risk_hat; n, r) <= level: an upper confidence bound of the mean
    loss at confidence 1 - level (bisection, to 1e-12 above)."""
    risk_hat = min(max(float(risk_hat), 0.0), 1.0)
    if n <= 0 or risk_hat >= 1:
        return 1.0
    lo, hi = risk_hat, 1.0
    for _ in range(40):   # to 1e-12
        mid = (lo + hi) / 2
        if hoeffding_bentkus_pvalue(risk_hat, n, mid) <= level:
            hi = mid
        else:
            lo = mid
    return hi


def hoeffding_bentkus_interval(risk_hat, n, delta):
    """A two-sided 1 - delta confidence interval of the mean loss: the upper bound at
    delta / 2, and the lower one as 1 - the upper bound of the complementary loss 1 - L."""
    return (1.0 - hoeffding_bentkus_upper_bound(1.0 - risk_hat, n, delta / 2),
            hoeffding_bentkus_upper_bound(risk_hat, n, delta / 2))


class LearnThenTest(RiskProcedure):
    """``select(losses)``: losses (n, T) in [0, 1], thresholds t_0 < ... < t_{T-1} = +inf."""
    name = 'learn_then_test'

    def __init__(self, target, delta=0.1):
        super().__init__(target)
        self.delta = check_open_unit(
            'delta', delta, 'the tolerated probability that the error exceeds target_error, '
            'e.g. 0.1')

    def pvalue(self, loss_sum, n):
        return hoeffding_bentkus_pvalue(loss_sum / n if n else 0.0, n, self.target, loss_sum)

    def n_needed(self):
        """The fewest images with which a zero observed risk is certified:
        p_HB(0) = (1 - target)^n <= delta, found by evaluating p_HB itself."""
        n = max(1, math.floor(math.log(self.delta) / math.log1p(-self.target)) - 2)
        while self.pvalue(0.0, n) > self.delta:
            n += 1
        while n > 1 and self.pvalue(0.0, n - 1) <= self.delta:
            n -= 1
        return n

    def select(self, losses):
        losses = self._check_losses(losses)
        n, count = losses.shape
        sums = self._column_sums(losses)
        index, tested = count - 1, []
        for j in range(count - 2, -1, -1):   # the strictest threshold first
            p = self.pvalue(sums[j], n)
            tested.append((j, p))
            if p > self.delta:
                break
            index = j
        return Selection(index=index, certified=index < count - 1, n=n,
                         n_needed=self.n_needed(), risk=torch.tensor(sums, dtype=torch.float64)
                         / max(n, 1), tested=tested)
