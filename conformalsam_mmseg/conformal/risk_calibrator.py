"""Risk-controlled pseudo-labels: choose the annotator's confidence threshold on the labeled
images so that the error of the kept labels is controlled, the image being the exchangeable
unit.

Label rule (:func:`.confidence_pseudo_labels`): the annotator's argmax where its probability
is >= t (t per predicted class in 'class' mode), 255 elsewhere. Data: per-image confidence
histograms of the labeled images (:class:`.ConfidenceHistogram`). Procedure, by ``risk``:

- ``'false_label_rate'`` (default): per-image share of wrong labels among the kept ones,
  Learn-then-Test with Hoeffding-Bentkus p-values, so P(R(t) <= target) >= 1 - delta;
- ``'kept_error'``: per-image share of labeled pixels kept and wrong, conformal risk control,
  so E[L_new(t)] <= target.

``mode='class'``: one threshold per predicted class k, calibrated on the images where the
annotator predicts k, with the pixels it labels k (the guarantee then holds for the class-k
labels of a fresh image in which k is predicted). A class with fewer calibration images than
the procedure needs (``n_needed``, printed in the warning) gets the ``fallback``: ``'pooled'``
(default: the 'pixel' mode threshold, whose guarantee is over all pixels, not for the class) or
``'keep_nothing'`` (t = +inf). When the procedure cannot certify any threshold (too few images,
or even the strictest is too wrong), the outcome is 'keep nothing', with a warning; it is never
a vacuous 'keep everything'.

Thresholds lie on the grid j / num_bins (and +inf). The risks at grid points are exact; the
binned threshold is the smallest grid point the procedure certifies. Against the exact
procedure over every real threshold, with t* its choice (the smallest certified calibration
confidence, or +inf): the binned t is never below the infimum of the certified thresholds and
never above ceil(t* num_bins) / num_bins, i.e. it is at most one bin stricter than t*.
"""
import math
import warnings
from dataclasses import dataclass, field

import torch

from .confidence_histogram import (DEFAULT_RISK_BINS, ConfidenceHistogram,
                                   threshold_grid)
from .inputs import IGNORE_INDEX, check_open_unit
from .learn_then_test import LearnThenTest, hoeffding_bentkus_interval
from .risk_control import ConformalRiskControl
from .risks import get_risk

PROCEDURES = {'false_label_rate': LearnThenTest, 'kept_error': ConformalRiskControl}
MODES = ('pixel', 'class')
FALLBACKS = ('pooled', 'keep_nothing')


@dataclass
class GroupCalibration:
    """One group's result: ``name`` ('all pixels' or a class), its threshold, how it was
    obtained (``source``: 'calibrated', 'keep_nothing' (nothing certified), or 'fallback: ...'),
    the calibration images' estimated risk at that threshold with a 1 - delta interval, and
    the kept share of their labeled pixels."""
    name: str
    n: int
    n_needed: int
    threshold: float
    source: str
    certified: bool
    risk: float
    risk_interval: tuple
    kept_ratio: float
    tested: int = 0


@dataclass
class RiskCalibration:
    risk: str
    mode: str
    target: float
    delta: float
    thresholds: torch.Tensor            # (K,) float64, +inf = keep nothing
    groups: list
    notes: list = field(default_factory=list)

    def to_dict(self):
        return dict(risk=self.risk, mode=self.mode, target=self.target, delta=self.delta,
                    thresholds=[_json(v) for v in self.thresholds.tolist()],
                    groups=[dict(g.__dict__, threshold=_json(g.threshold),
                                 risk_interval=list(g.risk_interval)) for g in self.groups],
                    notes=list(self.notes))

    def table(self):
        guarantee = ('P(error of kept labels <= target) >= 1 - delta' if self.risk ==
                     'false_label_rate' else 'E[kept-and-wrong share] <= target')
        lines = [f'risk-controlled pseudo-labels: risk={self.risk}, mode={self.mode}, '
                 f'target={self.target:g}, delta={self.delta:g} ({guarantee})']
        width = max(len('group'), *(len(g.name) for g in self.groups))
        lines.append(f"{'group':<{width}}  {'images':>6}  {'needed':>6}  {'threshold':>9}  "
                     f"{'kept':>6}  {'est. risk':>9}  {'interval':>15}  source")
        for g in self.groups:
            t = 'inf' if math.isinf(g.threshold) else f'{g.threshold:.4f}'
            lo, hi = g.risk_interval
            lines.append(f'{g.name:<{width}}  {g.n:>6}  {g.n_needed:>6}  {t:>9}  '
                         f'{100 * g.kept_ratio:>5.1f}%  {100 * g.risk:>8.2f}%  '
                         f'[{100 * lo:5.2f}, {100 * hi:5.2f}]%  {g.source}')
        lines += [f'note: {n}' for n in self.notes]
        return '\n'.join(lines)

    __str__ = table


class RiskCalibrator:
    """Accumulate labeled images with :meth:`update`, then :meth:`calibrate`.

    Args:
        num_classes: K.
        target_error: the tolerated risk, in (0, 1) (e.g. 0.05: 5% wrong kept labels).
        risk: ``'false_label_rate'`` (default) or ``'kept_error'``.
        delta: Learn-then-Test's tolerated failure probability, in (0, 1) (0.1); also the
            level of the reported risk intervals.
        mode: ``'pixel'`` (one threshold) or ``'class'`` (one per predicted class).
        fallback: ``'pooled'`` or ``'keep_nothing'`` for classes with too few images.
        num_bins: the threshold grid's resolution, a power of two.
        ignore_index: unlabeled pixels (255).
    """

    def __init__(self, num_classes, target_error=0.05, risk='false_label_rate', delta=0.1,
                 mode='pixel', fallback='pooled', num_bins=DEFAULT_RISK_BINS,
                 ignore_index=IGNORE_INDEX):
        self.loss_fn = get_risk(risk)
        self.risk = risk
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} for risk control, got {mode!r}")
        if fallback not in FALLBACKS:
            raise ValueError(f'fallback must be one of {FALLBACKS}, got {fallback!r}')
        self.delta = check_open_unit(
            'delta', delta, 'the tolerated probability that the error exceeds target_error, '
            'e.g. 0.1')
        self.procedure = (LearnThenTest(target_error, self.delta) if risk == 'false_label_rate'
                          else ConformalRiskControl(target_error))
        self.target = self.procedure.target
        self.mode, self.fallback = mode, fallback
        self.histogram = ConfidenceHistogram(num_classes, num_bins, ignore_index)

    @property
    def num_classes(self):
        return self.histogram.num_classes

    def update(self, probs, labels):
        """Add labeled images, (B, K, H, W) probabilities and (B, H, W) labels."""
        self.histogram.update(probs, labels)

    def all_reduce(self, group=None):
        """A calibrator with the images of every rank (see ConfidenceHistogram.all_reduce)."""
        merged = self._twin()
        merged.histogram = self.histogram.all_reduce(group)
        return merged

    def _twin(self):
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def thresholds(self):
        """(K,) float64 confidence thresholds t_k (+inf: keep nothing)."""
        return self.calibrate().thresholds

    def group_selection(self, group=None):
        """(Selection, losses) of the procedure on ``group`` (None: pooled; k: class k)."""
        labeled, kept, wrong = self.histogram.counts(group)
        losses = self.loss_fn(labeled, kept, wrong)
        return self.procedure.select(losses), (labeled, kept)

    def calibrate(self, class_names=None, warn=True):
        """The :class:`RiskCalibration` of the images seen so far."""
        k = self.num_classes
        if self.histogram.num_images == 0:
            raise ValueError(
                'empty calibration set: no labeled image seen (update() never called, or '
                f'every label was {self.histogram.ignore_index}); calibrate on the labeled '
                'images before asking for thresholds')
        names = list(class_names) if class_names else [f'class {c}' for c in range(k)]
        grid = threshold_grid(self.histogram.num_bins)
        notes = []
        pooled = self._group('all pixels', None, grid, notes)
        groups = [pooled]
        if self.mode == 'pixel':
            thresholds = torch.full((k,), pooled.threshold, dtype=torch.float64)
        else:
            thresholds = torch.empty(k, dtype=torch.float64)
            for c in range(k):
                g = self._group(names[c], c, grid, notes, pooled)
                groups.append(g)
                thresholds[c] = g.threshold
        if warn:
            for note in notes:
                warnings.warn(note, stacklevel=2)
        return RiskCalibration(risk=self.risk, mode=self.mode, target=self.target,
                               delta=self.delta, thresholds=thresholds, groups=groups,
                               notes=notes)

    def _group(self, name, group, grid, notes, pooled=None):
        selection, (labeled, kept) = self.group_selection(group)
        n, needed = selection.n, selection.n_needed
        what = f"{self.risk} <= {self.target:g}" + (
            f' with probability >= {1 - self.delta:g}' if self.risk == 'false_label_rate'
            else ' in expectation')
        if pooled is not None and n < needed:
            if self.fallback == 'pooled':
                threshold, source = pooled.threshold, 'fallback: pooled threshold'
            else:
                threshold, source = math.inf, 'fallback: keep nothing'
            notes.append(
                f'{name}: {n} calibration images, but {what} needs at least {needed}; '
                f'{source} (no guarantee for this class)')
            index = (grid == threshold).nonzero()
            index = int(index[0]) if index.numel() else len(grid) - 1
            certified = False
        else:
            index, certified = selection.index, selection.certified
            threshold = float(grid[index])
            source = 'calibrated' if certified else 'keep_nothing'
            if not certified:
                reason = (f'only {n} calibration images, {needed} needed for {what} even with '
                          'no error observed' if n < needed else
                          f'even the strictest threshold fails {what} on these {n} images')
                notes.append(f'{name}: no threshold certified ({reason}); keeping nothing. '
                             'Label more images, or raise target_error'
                             + (' or delta' if self.risk == 'false_label_rate' else ''))
        risk = float(selection.risk[index]) if n else 0.0
        total = int(labeled.sum())
        kept_ratio = int(kept[:, index].sum()) / total if total else 0.0
        interval = hoeffding_bentkus_interval(risk, n, self.delta) if n else (0.0, 1.0)
        return GroupCalibration(name=name, n=n, n_needed=needed, threshold=threshold,
                                source=source, certified=certified, risk=risk,
                                risk_interval=interval, kept_ratio=kept_ratio,
                                tested=len(selection.tested))


def _json(value):
    return None if math.isinf(value) else float(value)
