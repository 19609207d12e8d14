"""Per-image histograms of the annotator's confidence on the labeled images: the data of risk
calibration.

For every labeled (calibration) image i and every class k that the annotator predicts on some
labeled pixel of i, two counts per confidence bin b:

    labeled[i, k, b] = labeled pixels x of image i with k(x) = k and c(x) in bin b,
    wrong[i, k, b]   = those of them whose ground truth is not k,

with k(x), c(x) the annotator's argmax and its probability (:func:`.annotator_argmax`) and
``num_bins`` = nb bins of width 1 / nb plus a top bin:

    bin b, 0 <= b < nb:   b / nb <= c < (b + 1) / nb      (c < 0 counts in bin 0)
    bin nb:               c >= 1

Candidate thresholds are the bin edges t_j = j / nb, j = 0..nb, and t = +inf. A pixel is kept
at t_j exactly when its bin is >= j (nb is a power of two, so c * nb is exact and the bin of c
is floor(c * nb)); kept and kept-wrong counts at every t_j therefore follow exactly from
cumulative sums, with no approximation. Binning only restricts the thresholds a calibration can
choose to the grid.

Memory is n_images x (classes predicted per image) x (nb + 1) x 2 int32, independent of the
number of pixels. Histograms of several processes merge exactly (:meth:`merge`,
:meth:`all_reduce`): the records are integers, and the calibrations built on them sum per-image
risks in an order that does not depend on the order the images came in.
"""
import torch

from .confidence_filter import annotator_argmax
from .inputs import IGNORE_INDEX, check_calibration_pair, check_labels

DEFAULT_RISK_BINS = 2 ** 10
STATE_FORMAT = 'conformalsam.confidence_histogram'


def check_risk_bins(num_bins):
    if (isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1
            or num_bins > 2 ** 20 or num_bins & (num_bins - 1)):
        raise ValueError(
            f'num_bins must be a power of two between 1 and 2**20 (so that confidence * '
            f'num_bins is exact), got {num_bins!r}; the default is {DEFAULT_RISK_BINS}')
    return num_bins


def confidence_bins(conf, num_bins):
    """The bin (0..num_bins) of every confidence: floor(c * nb), clamped to [0, nb]."""
    return (conf.double() * num_bins).floor_().clamp_(0, num_bins).long()


def threshold_grid(num_bins):
    """The candidate thresholds (num_bins + 2,) float64: j / nb for j = 0..nb, then +inf."""
    grid = torch.arange(num_bins + 2, dtype=torch.float64) / num_bins
    grid[-1] = float('inf')
    return grid


class ConfidenceHistogram:
    """Streaming per-image confidence histograms (module docstring).

    Args:
        num_classes: K.
        num_bins: nb, a power of two (1024 by default: thresholds on a 1/1024 grid).
        ignore_index: label of unlabeled pixels (255), which count nowhere.
    """

    def __init__(self, num_classes, num_bins=DEFAULT_RISK_BINS, ignore_index=IGNORE_INDEX):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
        if 0 <= ignore_index < num_classes:
            raise ValueError(f'ignore_index={ignore_index} is one of the {num_classes} class '
                             'indices; use a value outside 0..num_classes-1 (255)')
        self.num_classes = num_classes
        self.num_bins = check_risk_bins(num_bins)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self):
        self.records = []      # per image: (classes (G_i,) int64, counts (G_i, nb + 1, 2) int32)
        self.skipped = 0       # images without a labeled pixel

    @property
    def num_images(self):
        return len(self.records)

    @torch.no_grad()
    def update(self, probs, labels):
        """Add labeled images: ``probs`` (B, K, H, W) or (K, H, W) annotator probabilities
        (need not sum to 1), ``labels`` (B, H, W) or (H, W) ground truth, 255 = unlabeled.
        Every item of the batch is one image. Bad input raises and adds nothing."""
        probs, labels, _ = check_calibration_pair(probs, labels, self.num_classes, False)
        new = []
        width = self.num_bins + 1
        for b in range(labels.shape[0]):
            truth, valid = check_labels(labels[b], self.num_classes, self.ignore_index)
            conf, pred = annotator_argmax(probs[b:b + 1])
            conf, pred = conf[0].cpu(), pred[0].cpu()
            truth = truth.cpu()
            valid = torch.ones_like(truth, dtype=torch.bool) if valid is None else valid.cpu()
            if torch.isnan(conf[valid]).any():
                raise ValueError(f'image {b} of the batch has NaN probabilities at labeled '
                                 'pixels; check the annotator output')
            if not valid.any():
                new.append(None)
                continue
            index = (pred * width + confidence_bins(conf, self.num_bins))[valid]
            wrong = (pred != truth)[valid]
            size = self.num_classes * width
            counts = torch.stack([torch.bincount(index, minlength=size),
                                  torch.bincount(index[wrong], minlength=size)], 1)
            counts = counts.view(self.num_classes, width, 2)
            classes = counts[:, :, 0].sum(1).nonzero().view(-1)
            new.append((classes, counts[classes].to(torch.int32)))
        for record in new:
            if record is None:
                self.skipped += 1
            else:
                self.records.append(record)

    # --- the data of a calibration ------------------------------------------------------
    def counts(self, group=None):
        """(labeled (n,), kept (n, nb + 2), wrong (n, nb + 2)) int64 over the n images of
        ``group``, at the thresholds of :func:`threshold_grid` (the last, +inf, keeps nothing).

        ``group=None``: all labeled pixels of every image (pooled, 'pixel' mode). ``group=k``:
        the pixels the annotator labels k, over the images where it labels k at least one
        labeled pixel.
        """
        per_bin = []
        for classes, counts in self.records:
            if group is None:
                per_bin.append(counts.sum(0))
            else:
                hit = (classes == group).nonzero()
                if hit.numel():
                    per_bin.append(counts[int(hit[0])])
        width = self.num_bins + 2
        if not per_bin:
            empty = torch.zeros(0, width, dtype=torch.int64)
            return torch.zeros(0, dtype=torch.int64), empty, empty.clone()
        per_bin = torch.stack(per_bin).long()                       # (n, nb + 1, 2)
        tail = per_bin.flip(1).cumsum(1).flip(1)                    # pixels in bins >= j
        tail = torch.cat([tail, torch.zeros_like(tail[:, :1])], 1)  # t = +inf keeps none
        return tail[:, 0, 0].clone(), tail[..., 0].contiguous(), tail[..., 1].contiguous()

    def images_per_class(self):
        """(K,) int64: the number of calibration images in which each class is predicted."""
        n = torch.zeros(self.num_classes, dtype=torch.int64)
        for classes, _ in self.records:
            n[classes] += 1
        return n

    # --- merging and state ---------------------------------------------------------------
    def merge(self, other):
        """Add the images of ``other`` (same num_classes and num_bins) to ``self``."""
        if (other.num_classes, other.num_bins) != (self.num_classes, self.num_bins):
            raise ValueError(
                f'cannot merge a histogram of num_classes={other.num_classes}, num_bins='
                f'{other.num_bins} into one of num_classes={self.num_classes}, num_bins='
                f'{self.num_bins}')
        self.records.extend(other.records)
        self.skipped += other.skipped
        return self

    def all_reduce(self, group=None):
        """A new histogram holding the images of every rank (``all_gather_object``); ``self``
        is left as it was. Outside torch.distributed, a copy. Every rank must call it."""
        merged = self.copy()
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return merged
        gathered = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (self.records, self.skipped), group=group)
        merged.reset()
        for records, skipped in gathered:
            merged.records.extend(records)
            merged.skipped += skipped
        return merged

    def state_dict(self):
        """Tensors and plain types (loads under ``weights_only=True``)."""
        return dict(format=STATE_FORMAT, num_classes=self.num_classes,
                    num_bins=self.num_bins, ignore_index=self.ignore_index,
                    classes=[c.clone() for c, _ in self.records],
                    counts=[h.clone() for _, h in self.records], skipped=self.skipped)

    def load_state_dict(self, state):
        if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
            raise ValueError(f"not a ConfidenceHistogram state (format '{STATE_FORMAT}')")
        for key in ('num_classes', 'num_bins'):
            if state[key] != getattr(self, key):
                raise ValueError(f'cannot load a histogram with {key}={state[key]} into one '
                                 f'with {key}={getattr(self, key)}')
        self.records = [(c.clone(), h.clone()) for c, h in zip(state['classes'],
                                                               state['counts'])]
        self.skipped = int(state['skipped'])

    def copy(self):
        twin = type(self)(self.num_classes, self.num_bins, self.ignore_index)
        twin.load_state_dict(self.state_dict())
        return twin
