"""The finite-sample conformal quantile, exact and from a histogram.

Split conformal prediction: with n exchangeable calibration scores s_1..s_n and error rate
alpha, the threshold is

    q = the r-th smallest score,  r = ceil((n + 1) * (1 - alpha)),

and q = +inf when r > n, i.e. when n < (1 - alpha) / alpha: too little data to promise
anything. A fresh exchangeable pixel then has P(s_{n+1} <= q) >= 1 - alpha.

alpha is read as the decimal it is written as (0.05 means 1/20, not the binary float closest
to it), so r is computed in exact rational arithmetic and never suffers from rounding
((n + 1) * 0.95 evaluated in floats can land just above an integer and add one to r).

The histogram version bins scores into ``num_bins`` right-closed bins of width w = 1 / num_bins
over [0, 1], plus one bin for scores <= 0 and one for scores > 1:

    index 0             scores s <= 0               upper edge 0
    index i, 1..nb      (i - 1) / nb < s <= i / nb   upper edge i / nb
    index nb + 1        scores s > 1                upper edge: the largest such score seen

The threshold is the upper edge of the bin holding the r-th smallest score, so it is never
below the exact q and, for scores in [0, 1], less than one bin width above it. ``num_bins`` is
a power of two so that s * num_bins is exact in floating point and every score lands in the bin
its value says.
"""
import math
from fractions import Fraction

import numpy as np
import torch

DEFAULT_NUM_BINS = 2 ** 16


def decimal_fraction(value):
    """A real scalar as the exact rational of its shortest decimal form, in its own precision.

    Python floats, numpy scalars (``np.float64(0.1)``, ``np.float32(0.1)``), 0-d arrays and
    0-d tensors all give 1/10 for 0.1, so a threshold does not depend on how the number was
    passed. Raises TypeError for anything else (booleans and strings included) and ValueError
    for NaN and infinities.
    """
    if isinstance(value, Fraction):
        return value
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.detach().cpu()
        value = value.numpy() if value.dtype in (torch.float32, torch.float64) else value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f'expected a real number, got {value!r}')
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if not math.isfinite(float(value)):
        raise ValueError(f'expected a finite number, got {value!r}')
    if isinstance(value, np.floating):
        # the shortest decimal that reads back as this value in its own precision
        return Fraction(np.format_float_positional(value, unique=True, trim='0'))
    return Fraction(repr(float(value)))


def alpha_fraction(alpha):
    """alpha as an exact rational, read from its shortest decimal form; checks 0 < alpha < 1."""
    try:
        alpha = decimal_fraction(alpha)
    except (TypeError, ValueError):
        raise ValueError(f'alpha must be a number in (0, 1), got {alpha!r}') from None
    if not 0 < alpha < 1:
        raise ValueError(
            f'alpha must lie strictly between 0 and 1 (the tolerated miscoverage rate, e.g. '
            f'0.05 for 95% coverage), got {float(alpha)!r}')
    return alpha


def conformal_rank(n, alpha):
    """r = ceil((n + 1)(1 - alpha)), the rank of the conformal quantile among n scores (may
    exceed n)."""
    return math.ceil((int(n) + 1) * (1 - alpha_fraction(alpha)))


def min_calibration_size(alpha):
    """The smallest n for which q is finite, ceil((1 - alpha) / alpha); 19 for alpha = 0.05."""
    a = alpha_fraction(alpha)
    return math.ceil((1 - a) / a)


def conformal_quantile(scores, alpha):
    """Exact q of the calibration ``scores`` (any shape, all used) at level ``alpha``.

    Returns a Python float; +inf when there are fewer than :func:`min_calibration_size` scores
    (including none). The r-th smallest is found by selection (``numpy.partition``), which
    returns the same value as sorting and taking element r - 1, in linear time and with one
    copy of the scores as the only extra memory (``torch.kthvalue`` needs three).
    """
    values = torch.as_tensor(scores).detach().cpu().reshape(-1)
    if values.dtype not in (torch.float32, torch.float64):
        values = values.to(torch.float64)
    return kth_smallest_inplace(values.numpy().copy(), conformal_rank(values.numel(), alpha))


def kth_smallest_inplace(values, r):
    """The r-th smallest (1-based) of the numpy array ``values``, reordered in place; +inf
    when r exceeds its length."""
    if r > values.size:
        return math.inf
    values.partition(r - 1)
    return float(values[r - 1])


def check_num_bins(num_bins):
    if (isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2
            or num_bins > 2 ** 24 or num_bins & (num_bins - 1)):
        raise ValueError(
            f'num_bins must be a power of two between 2 and 2**24 (so that score * num_bins is '
            f'exact in floating point), got {num_bins!r}; the default is 2**16')
    return num_bins


def histogram_bin_index(scores, num_bins=DEFAULT_NUM_BINS, dtype=torch.int64):
    """The bin index (0..num_bins + 1, see the module docstring) of every score."""
    # index = ceil(s * num_bins), exact because num_bins is a power of two;
    # clamping folds s <= 0 into bin 0 and s > 1 into bin num_bins + 1; float32 cannot hold
    # 2**24 + 1 (it would round the overflow bin down to the bin of edge 1), so large bin
    # counts are computed in float64
    if scores.dtype != torch.float64 and num_bins + 1 > 2 ** 24:
        scores = scores.to(torch.float64)
    index = scores * num_bins
    return index.ceil_().clamp_(0, num_bins + 1).to(dtype)


def histogram_upper_edges(num_bins=DEFAULT_NUM_BINS):
    """Upper edge of every bin (float64, num_bins + 2); the overflow bin's edge is +inf here and
    replaced by the largest overflowing score by :func:`histogram_quantile`."""
    edges = torch.arange(num_bins + 2, dtype=torch.float64) / num_bins
    edges[-1] = math.inf
    return edges


def histogram_quantile(counts, alpha, overflow_max=None):
    """Conservative q per group from score histograms.

    Args:
        counts: (G, num_bins + 2) int64, one histogram per group.
        alpha: one alpha, or one per group.
        overflow_max: (G,) the largest score > 1 seen in each group (-inf if none); only read
            when a group's quantile falls in the overflow bin.

    Returns:
        (G,) float64: q per group, +inf where the group has fewer than
        :func:`min_calibration_size` scores.
    """
    counts = torch.as_tensor(counts)
    if counts.dim() == 1:
        counts = counts.unsqueeze(0)
    groups, width = counts.shape
    num_bins = check_num_bins(width - 2)
    alphas = alpha if isinstance(alpha, (list, tuple)) else [alpha] * groups
    if len(alphas) != groups:
        raise ValueError(f'got {len(alphas)} alphas for {groups} histograms')
    n = counts.sum(1).tolist()
    ranks = [conformal_rank(n_g, a) for n_g, a in zip(n, alphas)]
    cumulative = counts.cumsum(1)
    # the first bin whose cumulative count reaches r holds the r-th smallest score
    rank_t = torch.tensor([min(r, max(n_g, 1)) for r, n_g in zip(ranks, n)],
                          dtype=cumulative.dtype).unsqueeze(1)
    bins = torch.searchsorted(cumulative, rank_t).squeeze(1).clamp_(max=width - 1)
    q = histogram_upper_edges(num_bins)[bins]
    too_few = torch.tensor([r > n_g for r, n_g in zip(ranks, n)], dtype=torch.bool)
    overflow = (bins == num_bins + 1) & ~too_few
    if overflow.any():
        if overflow_max is None:
            raise ValueError('a quantile falls among scores > 1 but overflow_max was not given')
        q[overflow] = torch.as_tensor(overflow_max, dtype=torch.float64)[overflow]
    q[too_few] = math.inf
    return q
