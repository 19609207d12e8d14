"""Streaming histograms of calibration scores, one per group of pixels: the data of a
calibration procedure with ``method='histogram'``.

Scores are binned as in :mod:`.quantile` (``num_bins`` right-closed bins over [0, 1], one bin
for scores <= 0, one for scores > 1 whose upper edge is the largest such score seen, kept per
group in ``overflow_max``). Memory does not grow with the number of pixels, histograms of
several processes add up exactly, and the q read from them (:func:`.histogram_quantile`) is
never below the exact conformal quantile and less than one bin width above it.
"""
import math

import torch

from .quantile import (DEFAULT_NUM_BINS, check_num_bins, histogram_bin_index,
                       histogram_quantile)


class ScoreHistogram:
    """``num_groups`` histograms of ``num_bins + 2`` int64 counts (``counts``, (G, nb + 2)).

    :meth:`add` counts scores into the group of each; :meth:`quantiles` reads q per group.
    """

    def __init__(self, num_groups, num_bins=DEFAULT_NUM_BINS):
        self.num_groups = num_groups
        self.num_bins = check_num_bins(num_bins)
        width = self.num_bins + 2
        # one flat buffer: the (groups, bins) histograms, then a trash bin for ignored pixels
        self._flat_counts = torch.zeros(num_groups * width + 1, dtype=torch.int64)
        self.counts = self._flat_counts[:-1].view(num_groups, width)
        # bin indices in int32 when they fit: converting scores to it is 4x cheaper than int64
        self.bin_dtype = torch.int32 if num_groups * width < 2 ** 31 - 1 else torch.int64
        self.overflow_max = torch.full((num_groups,), -math.inf, dtype=torch.float64)

    def add(self, scores, group=None, valid=None):
        """Count CPU ``scores`` (any shape); ``group``: the group of each (same shape; None:
        group 0); ``valid``: the bool mask of the scores to count (None: all)."""
        width = self.num_bins + 2
        bins = histogram_bin_index(scores, self.num_bins, self.bin_dtype)
        if group is not None:
            group = group.to(self.bin_dtype)
            bins.add_(group, alpha=width)
        if valid is not None:
            bins.masked_fill_(~valid, self._flat_counts.numel() - 1)   # the trash bin
        bins = bins.view(-1)
        # index_add_ of a stride-0 "ones" needs no (groups x bins) temporary, unlike bincount
        self._flat_counts.index_add_(
            0, bins, torch.ones(1, dtype=torch.int64).expand(bins.numel()))
        _track_overflow(self.overflow_max, scores, group, valid)

    def sizes(self):
        """n per group, (G,) int64."""
        return self.counts.sum(1)

    def quantiles(self, alphas):
        """q per group at ``alphas`` (one per group), (G,) float64; +inf where n is too small."""
        return histogram_quantile(self.counts, alphas, self.overflow_max)

    def all_reduce(self, group=None):
        """Sum the counts (max the overflow maxima) of every rank of ``group``, in place."""
        import torch.distributed as dist
        device = torch.device('cpu')
        if dist.get_backend(group) == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        counts, overflow = self.counts.to(device), self.overflow_max.to(device)
        dist.all_reduce(counts, dist.ReduceOp.SUM, group=group)
        dist.all_reduce(overflow, dist.ReduceOp.MAX, group=group)
        self.counts.copy_(counts)
        self.overflow_max.copy_(overflow)

    def state(self):
        """The store's entries of the calibrator state (copies)."""
        return dict(counts=self.counts.clone(), overflow_max=self.overflow_max.clone(),
                    exact_scores=None)

    def load_state(self, state):
        self.counts.copy_(state['counts'])
        self.overflow_max.copy_(state['overflow_max'])


def _track_overflow(overflow_max, scores, group, valid):
    """Keep per group (``group`` None: group 0) the largest score > 1, the overflow bin's
    upper edge; such scores are rare, so the common case costs one max."""
    if scores.numel() == 0 or float(scores.max()) <= 1:
        return
    over = scores > 1
    if valid is not None:
        over &= valid
    if over.any():
        group = (torch.zeros(int(over.sum()), dtype=torch.int64) if group is None
                 else group[over])
        overflow_max.scatter_reduce_(0, group, scores[over].to(torch.float64), 'amax')
