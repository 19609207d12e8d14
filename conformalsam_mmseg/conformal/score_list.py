"""Every calibration score, per group of pixels: the data of a calibration procedure with
``method='exact'`` (small data, and checking the histograms). q is the exact r-th smallest
score, found by selection (:func:`.kth_smallest_inplace`)."""
import numpy as np
import torch

from .quantile import conformal_rank, kth_smallest_inplace


class ScoreList:
    """The scores of ``num_groups`` groups, kept as they come (same interface as
    :class:`.ScoreHistogram`)."""

    def __init__(self, num_groups):
        self.num_groups = num_groups
        self._chunks = [[] for _ in range(num_groups)]

    def add(self, scores, group=None, valid=None):
        """Keep CPU ``scores`` (any shape) in the group of each (``group``, same shape; None:
        group 0), those where ``valid`` is True (None: all). The scores are copied."""
        if valid is not None:
            scores = scores[valid]
        if group is None:
            self._chunks[0].append(scores.reshape(-1).clone())
            return
        group = (group.reshape(-1) if valid is None else group[valid]).to(torch.int64)
        scores = scores.reshape(-1)
        if bool((group[1:] < group[:-1]).any()):
            # a stable sort splits the scores by group in their order of arrival, in one pass
            scores = scores[torch.argsort(group, stable=True)]
        else:   # already grouped (e.g. one image after another): a copy, not a view
            scores = scores.clone()
        sizes = torch.bincount(group, minlength=self.num_groups).tolist()
        for chunks, part in zip(self._chunks, torch.split(scores, sizes)):
            if part.numel():
                chunks.append(part)

    def sizes(self):
        """n per group, (G,) int64."""
        return torch.tensor([sum(c.numel() for c in chunks) for chunks in self._chunks],
                            dtype=torch.int64)

    def quantiles(self, alphas):
        """The exact q per group at ``alphas`` (one per group), (G,) float64; +inf where n is
        too small."""
        # torch.cat makes the one copy that selection may reorder
        return torch.tensor([
            kth_smallest_inplace(torch.cat(chunks).numpy() if chunks else np.empty(0),
                                 conformal_rank(sum(c.numel() for c in chunks), alpha))
            for chunks, alpha in zip(self._chunks, alphas)], dtype=torch.float64)

    def tensors(self):
        """The scores of every group, one tensor each (empty for a group without scores)."""
        return [torch.cat(chunks) if chunks else torch.empty(0) for chunks in self._chunks]

    def all_reduce(self, group=None):
        """Replace the scores by those of every rank of ``group`` (``all_gather_object``)."""
        import torch.distributed as dist
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, self.tensors(), group=group)
        self._chunks = [[] for _ in range(self.num_groups)]
        for tensors in gathered:
            for chunks, scores in zip(self._chunks, tensors):
                chunks.append(scores)

    def state(self):
        """The store's entries of the calibrator state (copies)."""
        return dict(counts=None, overflow_max=None, exact_scores=self.tensors())

    def load_state(self, state):
        self._chunks = [[] for _ in range(self.num_groups)]
        for chunks, scores in zip(self._chunks, state['exact_scores']):
            if scores.numel():
                chunks.append(scores.clone())
