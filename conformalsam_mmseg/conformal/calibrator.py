"""Streaming split-conformal calibration of the annotator's pixel labels (ConformalSAM, Stage I).

The calibration set is the labeled images: for every labeled pixel x with ground truth y the
calibrator sees the nonconformity score s_y(x) (LAC: 1 - p_y(x), :mod:`.scores`) and, per group
of pixels, returns the conformal quantile q (see :mod:`.quantile`). A pixel of an unlabeled
image then gets the prediction set C(x) = {k : s_k(x) <= q_k} (see :mod:`.filtering`).

:class:`ConformalCalibrator` checks the input, computes the scores, and hands them to one
calibration procedure (:mod:`.calibration_procedure`), chosen by ``mode``:

- ``'pixel'`` (the paper's main setting, default): :class:`.PixelWiseCalibration`, all labeled
  pixels pooled, one q;
- ``'class'`` (Mondrian conformal prediction by true class, our extension):
  :class:`.ClassWiseCalibration`, one q_k per class;
- ``'image'`` (the paper's image-wise ablation): :class:`.ImageWiseCalibration`, one q_i per
  labeled image, aggregated by ``image_aggregation`` (``'mean'``, ``'median'``,
  ``'conformal'``).

``method`` chooses the procedure's score store: ``'histogram'`` (default,
:class:`.ScoreHistogram`) keeps one 2^16-bin histogram per group, so memory does not grow with
the number of pixels, histograms of several processes add up exactly, and q is never below the
exact quantile and less than one bin width (1.5e-5) above it; ``'exact'``
(:class:`.ScoreList`) keeps every score and selects the exact r-th smallest: for small data and
for checking. In ``'image'`` mode the store is applied to each image's pixels and only
(q_i, n_i) is kept per image.

The state (:meth:`ConformalCalibrator.state_dict`) and its JSON form are described in
:mod:`.calibrator_json` and docs/conformal.md.
"""
import functools
import json
import math

import numpy as np
import torch

from .calibrator_json import calibration_to_json, state_from_json
from .class_calibration import ClassWiseCalibration
from .image_calibration import AGGREGATIONS, ImageWiseCalibration
from .inputs import (IGNORE_INDEX, check_calibration_pair, check_labels,
                     check_probabilities)
from .pixel_calibration import PixelWiseCalibration
from .quantile import DEFAULT_NUM_BINS, alpha_fraction, check_num_bins
from .score_histogram import ScoreHistogram
from .score_list import ScoreList
from .scores import SCORES, get_score
from .state_checks import (STATE_FORMAT, STATE_VERSION, check_header, check_json_data,
                           check_state_data)

CHUNK_PIXELS = 2 ** 18   # pixels scored at a time inside update()
PROCEDURES = {'pixel': PixelWiseCalibration, 'class': ClassWiseCalibration,
              'image': ImageWiseCalibration}
STORES = {'histogram': ScoreHistogram, 'exact': ScoreList}


class ConformalCalibrator:
    """Accumulate calibration scores with :meth:`update`, then read q with :meth:`thresholds`.

    Args:
        num_classes: K, the number of classes of the annotator's probabilities.
        alpha: the error rate (miscoverage) in (0, 1); 0.05 in the paper. One number, or in
            ``'class'`` mode one per class.
        mode: ``'pixel'``, ``'class'`` or ``'image'`` (see the module docstring).
        score: a registered nonconformity score name (``'lac'``, ``'aps'``) or instance.
        method: ``'histogram'`` (streaming) or ``'exact'`` (keeps every score).
        num_bins: histogram bins over [0, 1], a power of two.
        image_aggregation: ``'mean'``, ``'median'`` or ``'conformal'`` (``'image'`` mode only).
        check_probs: check that probabilities sum to 1 per pixel; pass False for un-normalised
            annotator scores (e.g. SEEM's, which do not sum to 1). Scores outside [0, 1] are
            still calibrated correctly: the histogram keeps an underflow and an overflow bin.
        prob_tol: tolerance of that check.
        ignore_index: label of unlabeled pixels, skipped (255).
    """
    MODES = tuple(PROCEDURES)
    METHODS = tuple(STORES)
    IMAGE_AGGREGATIONS = AGGREGATIONS

    def __init__(self, num_classes, alpha=0.05, mode='pixel', score='lac', method='histogram',
                 num_bins=DEFAULT_NUM_BINS, image_aggregation='mean', check_probs=True,
                 prob_tol=1e-3, ignore_index=IGNORE_INDEX):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
        _check_choice('mode', mode, self.MODES)
        _check_choice('method', method, self.METHODS)
        _check_choice('image_aggregation', image_aggregation, self.IMAGE_AGGREGATIONS)
        if 0 <= ignore_index < num_classes:
            raise ValueError(
                f'ignore_index={ignore_index} is one of the {num_classes} class indices; use a '
                'value outside 0..num_classes-1 (255)')
        if not prob_tol >= 0:
            raise ValueError(f'prob_tol must be >= 0, got {prob_tol!r}')
        self.num_classes = num_classes
        self.mode = mode
        self.method = method
        self.num_bins = check_num_bins(num_bins)
        self.image_aggregation = image_aggregation
        self.check_probs = bool(check_probs)
        self.prob_tol = float(prob_tol)
        self.ignore_index = int(ignore_index)
        self.score_fn = get_score(score)
        self.alpha, self._alphas = _check_alphas(alpha, mode, num_classes)
        self.reset()

    # ------------------------------------------------------------------ accumulation
    def reset(self):
        """Forget every score seen."""
        store = STORES[self.method]
        if self.method == 'histogram':
            store = functools.partial(store, num_bins=self.num_bins)
        if self.mode == 'image':
            self.procedure = ImageWiseCalibration(self.num_classes, self.alpha, store,
                                                  self.image_aggregation)
        else:
            self.procedure = PROCEDURES[self.mode](self.num_classes, self._alphas, store)

    @property
    def _counts(self):
        """The (G, num_bins + 2) score histograms of a streaming 'pixel' or 'class'
        calibration, None otherwise."""
        return getattr(getattr(self.procedure, 'store', None), 'counts', None)

    @torch.no_grad()
    def update(self, probs_or_scores, labels, *, is_scores=False):
        """Add a batch of labeled pixels to the calibration set.

        Args:
            probs_or_scores: the annotator's probabilities p(x), (B, K, H, W) or (K, H, W);
                with ``is_scores=True``, precomputed scores instead: per class s_k(x) of the
                same shape, or the true-class scores s_y(x) shaped like ``labels``.
            labels: ground truth (B, H, W) or (H, W), integers in 0..K-1 or ``ignore_index``.
                In ``'image'`` mode every item of the batch is one image.

        Inputs may live on any device: scores are computed there and counted on the CPU,
        where the calibration state lives.
        """
        x, labels, true_class_given = check_calibration_pair(
            probs_or_scores, labels, self.num_classes, is_scores)
        # a few images at a time, so that temporaries stay small whatever the batch size; every
        # chunk is checked and scored before any is counted, so bad input changes nothing
        step = max(1, CHUNK_PIXELS // max(math.prod(labels.shape[1:]), 1))
        chunks = []
        for start in range(0, labels.shape[0], step):
            part = slice(start, start + step)
            index, valid = check_labels(labels[part], self.num_classes, self.ignore_index)
            if true_class_given:
                scores = x[part]
            elif is_scores:
                scores = x[part].gather(1, index.unsqueeze(1)).squeeze(1)
            else:
                if self.check_probs:
                    check_probabilities(x[part], self.prob_tol)
                scores = self.score_fn.true_class(x[part], index)
            if not (self.check_probs and not is_scores
                    and self.score_fn.finite_on_probabilities):
                _check_finite(scores, valid)
            chunks.append((scores.cpu(), None if valid is None else valid.cpu(), part))
        for scores, valid, part in chunks:
            self.procedure.add(scores, labels[part], valid)

    # ------------------------------------------------------------------ thresholds
    @property
    def num_groups(self):
        """1 in 'pixel' mode, K in 'class' mode, the number of images seen in 'image' mode."""
        return self.procedure.num_groups

    def group_counts(self):
        """n per group: the number of calibration pixels, (G,) int64."""
        return self.procedure.group_counts()

    def group_alphas(self):
        """alpha per group (a list of floats)."""
        return self.procedure.group_alphas()

    def group_thresholds(self):
        """q per group, (G,) float64; +inf for a group with fewer than (1 - alpha) / alpha
        pixels. In 'image' mode these are the per-image q_i, before aggregation."""
        self._require_data()
        return self.procedure.group_thresholds()

    def thresholds(self):
        """q_k per class, (K,) float64: class k is in C(x) when s_k(x) <= q_k.

        The same q for every class in 'pixel' and 'image' mode, the class's own q in 'class'
        mode. Raises ValueError on an empty calibration set.
        """
        self._require_data()
        return self.procedure.thresholds()

    def group_names(self, class_names=None):
        return self.procedure.group_names(class_names)

    def _require_data(self):
        if int(self.group_counts().sum()) == 0:
            raise ValueError(
                'empty calibration set: no labeled pixel has been seen (update() was never '
                f'called, or every label was the ignore index {self.ignore_index}); calibrate '
                'on labeled images before asking for thresholds')

    # ------------------------------------------------------------------ distributed
    def all_reduce(self, group=None):
        """A new calibrator holding the calibration data of every rank of ``group``.

        Histograms are summed (and overflow maxima maxed) with ``torch.distributed.all_reduce``;
        exact scores and per-image (q_i, n_i) are gathered. The thresholds of the result equal
        those of one process that saw all the data. ``self`` is left as it was, so a rank can
        go on updating and merge again later without counting anything twice. Outside
        torch.distributed this returns a copy. Every rank must call it.
        """
        merged = self.copy()
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            merged.procedure.all_reduce(group)
        return merged

    # ------------------------------------------------------------------ state
    def config(self):
        """The constructor arguments, JSON-serialisable."""
        name = getattr(self.score_fn, 'name', None)
        if SCORES.get(name) is not type(self.score_fn):
            raise ValueError(
                f'score {self.score_fn!r} is not registered by name, so a saved calibration '
                'could not be loaded again; register it with register_score')
        return dict(num_classes=self.num_classes, alpha=self.alpha, mode=self.mode,
                    score=name, method=self.method, num_bins=self.num_bins,
                    image_aggregation=self.image_aggregation, check_probs=self.check_probs,
                    prob_tol=self.prob_tol, ignore_index=self.ignore_index)

    def state_dict(self):
        """Everything needed to resume or reuse the calibration (tensors and plain types, so it
        fits in a checkpoint loaded with ``weights_only=True``)."""
        return dict(format=STATE_FORMAT, version=STATE_VERSION, config=self.config(),
                    **self.procedure.state())

    def load_state_dict(self, state, where='calibrator state'):
        """Restore the calibration data of :meth:`state_dict`.

        The structure (num_classes, mode, method, score, num_bins, ignore_index) must match;
        alpha and image_aggregation are threshold-time choices and stay those of ``self``, so
        a saved histogram or score list can be thresholded at another alpha. In 'image' mode
        the state keeps only the per-image q_i at its alpha, so alpha must match there. The
        whole state is validated first (:mod:`.state_checks`); ``where`` names it in errors.
        """
        theirs = check_header(state, where)
        mine = self.config()
        for key in ('num_classes', 'mode', 'method', 'score', 'num_bins', 'ignore_index'):
            if mine[key] != theirs[key]:
                raise ValueError(
                    f'{where}: cannot load a calibration made with {key}={theirs[key]!r} into '
                    f'a calibrator with {key}={mine[key]!r}; build it with the same {key} '
                    '(or use ConformalCalibrator.from_state_dict)')
        if self.mode == 'image' and alpha_fraction(theirs['alpha']) != alpha_fraction(self.alpha):
            # only the per-image q_i at the saved alpha are kept, not the scores behind them
            raise ValueError(
                f"{where}: cannot load an 'image' mode calibration made with "
                f"alpha={theirs['alpha']!r} into a calibrator with alpha={self.alpha!r}: the "
                'state keeps only the per-image quantiles at its own alpha; build the '
                f"calibrator with alpha={theirs['alpha']!r} (or use "
                'ConformalCalibrator.from_state_dict), or calibrate again at the new alpha')
        check_state_data(state, mine, where)
        self.reset()
        self.procedure.load(state)

    @classmethod
    def from_state_dict(cls, state, where='calibrator state'):
        """A calibrator with the configuration (alpha included) and data of ``state``."""
        calibrator = cls._from_config(check_header(state, where), where)
        calibrator.load_state_dict(state, where)
        return calibrator

    @classmethod
    def _from_config(cls, config, where):
        try:
            return cls(**config)
        except (TypeError, ValueError) as e:
            raise ValueError(f'{where}: config: {e}') from None

    def copy(self):
        return type(self).from_state_dict(self.state_dict())

    def to_json_dict(self, group_names=None):
        """JSON-ready description: config, per-group n and q, per-class q, and the data
        (:mod:`.calibrator_json`). +inf thresholds are written as null with
        ``"q_infinite": true``."""
        return calibration_to_json(self, group_names)

    def save_json(self, path, group_names=None):
        """Write :meth:`to_json_dict` to ``path`` (strict JSON: no NaN or Infinity)."""
        with open(path, 'w') as f:
            json.dump(self.to_json_dict(group_names), f, allow_nan=False)

    @classmethod
    def from_json_dict(cls, data, where='calibrator JSON'):
        """A calibrator restored from :meth:`to_json_dict`; the whole dict is validated
        first, errors name the field and ``where``."""
        calibrator = cls._from_config(check_header(data, where, 'JSON'), where)
        check_json_data(data, calibrator.config(), where)
        calibrator.load_state_dict(state_from_json(calibrator.state_dict(), data), where)
        return calibrator

    @classmethod
    def load_json(cls, path):
        """A calibrator restored from :meth:`save_json`, ready to threshold or to update."""
        with open(path) as f:
            try:
                data = json.load(f)
            except ValueError as e:
                raise ValueError(f'{path}: not a JSON file ({e}); write it with '
                                 'ConformalCalibrator.save_json') from None
        return cls.from_json_dict(data, where=str(path))

    def __repr__(self):
        return (f'{type(self).__name__}(num_classes={self.num_classes}, alpha={self.alpha}, '
                f"mode='{self.mode}', score='{self.score_fn.name}', method='{self.method}', "
                f'pixels={int(self.group_counts().sum())})')


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def _check_alphas(alpha, mode, num_classes):
    """(alpha as given, normalised to float / list of floats, alpha per fixed group)."""
    if isinstance(alpha, (torch.Tensor, np.ndarray)) and alpha.ndim > 0:
        alpha = list(alpha)   # numpy / torch scalars, each read at its own precision
    if isinstance(alpha, (list, tuple)):
        if mode != 'class':
            raise ValueError(
                f"one alpha per group needs mode='class' (one per class); mode '{mode}' takes "
                f'a single alpha, got {len(alpha)} values')
        if len(alpha) != num_classes:
            raise ValueError(
                f"mode 'class' takes one alpha, or one per class ({num_classes}), got "
                f'{len(alpha)} values')
        alphas = [float(alpha_fraction(a)) for a in alpha]
        return alphas, alphas
    alpha = float(alpha_fraction(alpha))
    return alpha, [alpha] * (num_classes if mode == 'class' else 1)


def _check_finite(scores, valid):
    finite = torch.isfinite(scores)
    if finite.all():
        return
    bad = ~finite if valid is None else ~finite & valid
    if bad.any():
        raise ValueError(
            f'{int(bad.sum())} labeled pixels have NaN or infinite scores; check the annotator '
            'output (probabilities must be finite)')
