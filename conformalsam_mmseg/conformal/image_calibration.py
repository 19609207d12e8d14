"""Image-wise calibration, the paper's image-wise ablation (``mode='image'``): one q_i per
labeled image, from that image's pixels alone, aggregated into a single q for every class.

The paper does not say how the q_i are aggregated; ``aggregation`` chooses:

- ``'mean'`` (default, the simplest reading of "image-wise" thresholds): the mean of the
  finite q_i;
- ``'median'``: the lower median of the finite q_i;
- ``'conformal'``: the conformal quantile of all q_i at the same alpha, so that with
  probability >= 1 - alpha a fresh exchangeable image's own q_i is below it.

Images with no labeled pixel are ignored. Images with too few labeled pixels for a finite q_i
(n_i < (1 - alpha) / alpha) are left out of the mean and the median, which they would make
infinite. Each image's pixels go through a score store of their own (histogram or exact, as
the calibrator's ``method``), and only (q_i, n_i) is kept per image.
"""
import math

import torch

from .calibration_procedure import CalibrationProcedure
from .quantile import conformal_quantile

AGGREGATIONS = ('mean', 'median', 'conformal')


class ImageWiseCalibration(CalibrationProcedure):
    """One group per image seen; ``alpha`` is one number."""
    mode = 'image'

    def __init__(self, num_classes, alpha, new_store, aggregation='mean'):
        super().__init__(num_classes, new_store)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'image_aggregation must be one of {AGGREGATIONS}, got '
                             f'{aggregation!r}')
        self.alpha = alpha
        self.aggregation = aggregation
        self.image_q, self.image_n = [], []

    def add(self, scores, labels, valid):
        images = scores.shape[0]
        scores = scores.reshape(images, -1)
        valid = None if valid is None else valid.reshape(images, -1)
        image = torch.arange(images).unsqueeze(1).expand_as(scores)
        store = self.new_store(images)
        store.add(scores, image, valid)
        self.image_q.extend(store.quantiles([self.alpha] * images).tolist())
        self.image_n.extend(store.sizes().tolist())

    @property
    def num_groups(self):
        return len(self.image_n)

    def group_counts(self):
        return torch.tensor(self.image_n, dtype=torch.int64)

    def group_alphas(self):
        return [self.alpha] * len(self.image_n)

    def group_thresholds(self):
        return torch.tensor(self.image_q, dtype=torch.float64)

    def thresholds(self):
        q = self.aggregate(self.group_thresholds())
        return torch.full((self.num_classes,), q, dtype=torch.float64)

    def aggregate(self, q):
        """The single q of the per-image ``q`` (module docstring)."""
        seen = torch.tensor(self.image_n) > 0
        if self.aggregation == 'conformal':
            return conformal_quantile(q[seen], self.alpha)
        finite = sorted(q[seen & torch.isfinite(q)].tolist())
        if not finite:
            return math.inf
        if self.aggregation == 'median':
            return finite[(len(finite) - 1) // 2]
        return math.fsum(finite) / len(finite)  # exactly rounded, so independent of order

    def group_names(self, class_names=None):
        return [f'image {i}' for i in range(len(self.image_n))]

    def all_reduce(self, group=None):
        import torch.distributed as dist
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (self.image_q, self.image_n), group=group)
        self.image_q, self.image_n = [], []
        for image_q, image_n in gathered:
            self.image_q.extend(image_q)
            self.image_n.extend(image_n)

    def state(self):
        return dict(counts=None, overflow_max=None, exact_scores=None,
                    image_q=torch.tensor(self.image_q, dtype=torch.float64),
                    image_n=torch.tensor(self.image_n, dtype=torch.int64))

    def load(self, state):
        self.image_q = [float(q) for q in state['image_q']]
        self.image_n = [int(n) for n in state['image_n']]
