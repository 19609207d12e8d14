"""Streaming split-conformal calibration of the annotator's pixel labels (ConformalSAM, Stage I).

The calibration set is the labeled images: for every labeled pixel x with ground truth y the
calibrator sees the nonconformity score s_y(x) (LAC: 1 - p_y(x)) and, per group of pixels,
returns the conformal quantile q (see :mod:`.quantile`). A pixel of an unlabeled image then
gets the prediction set C(x) = {k : s_k(x) <= q_k} (see :mod:`.filtering`).

Groupings (``mode``):

- ``'pixel'`` (the paper's main setting, default): all labeled pixels pooled, one q. Coverage
  P(y in C(x)) >= 1 - alpha holds on average over pixels, not for each class.
- ``'class'`` (Mondrian conformal prediction by true class, our extension): one q_k from the
  pixels of class k, so P(y in C(x) | y = k) >= 1 - alpha for every class k, the rare ones
  included. q_k is the threshold applied to class k's score at prediction time.
- ``'image'`` (the paper's image-wise ablation): one q_i per labeled image, from that image's
  pixels alone, aggregated into a single q. The paper does not say how; ``image_aggregation``
  chooses, and the default is the **mean** of the per-image q_i (the simplest reading of
  "image-wise" thresholds). Images with no labeled pixel are ignored; images with too few
  labeled pixels for a finite q_i (n_i < (1 - alpha) / alpha) are left out of the mean and
  the median, which they would make infinite. ``'median'`` takes the lower median of the finite
  q_i. ``'conformal'`` takes the conformal quantile of all q_i at the same alpha, so that with
  probability >= 1 - alpha a fresh exchangeable image's own q_i is below it.

Methods: ``'histogram'`` (default) keeps one 2^16-bin histogram per group, so memory does not
grow with the number of pixels, histograms of several processes add up exactly, and q is never
below the exact quantile and less than one bin width (1.5e-5) above it. ``'exact'`` keeps every
score and selects the exact r-th smallest: for small data and for checking. In ``'image'`` mode
the method is applied to each image's pixels and only (q_i, n_i) is kept per image.
"""
import json
import math

import numpy as np
import torch

from .inputs import (IGNORE_INDEX, check_calibration_pair, check_labels,
                     check_probabilities)
from .quantile import (DEFAULT_NUM_BINS, alpha_fraction, check_num_bins,
                       conformal_quantile, conformal_rank, histogram_bin_index,
                       histogram_quantile, kth_smallest_inplace,
                       min_calibration_size)
from .scores import SCORES, get_score

STATE_FORMAT = 'conformalsam.calibrator'
STATE_VERSION = 1
CHUNK_PIXELS = 2 ** 18   # pixels scored at a time inside update()


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
    MODES = ('pixel', 'class', 'image')
    METHODS = ('histogram', 'exact')
    IMAGE_AGGREGATIONS = ('mean', 'median', 'conformal')

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
        groups = self.num_classes if self.mode == 'class' else 1
        streaming = self.method == 'histogram' and self.mode != 'image'
        # one flat buffer: the (groups, bins) histograms, then a trash bin for ignored pixels
        self._flat_counts = (torch.zeros(groups * (self.num_bins + 2) + 1, dtype=torch.int64)
                             if streaming else None)
        self._counts = (self._flat_counts[:-1].view(groups, self.num_bins + 2)
                        if streaming else None)
        # bin indices in int32 when they fit: converting scores to it is 4x cheaper than int64
        self._bin_dtype = (torch.int32 if groups * (self.num_bins + 2) < 2 ** 31 - 1
                           else torch.int64)
        self._overflow_max = (torch.full((groups,), -math.inf, dtype=torch.float64)
                              if streaming else None)
        self._exact = ([[] for _ in range(groups)]
                       if self.method == 'exact' and self.mode != 'image' else None)
        self._image_q = []
        self._image_n = []

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
            index = (labels[part].clamp(0, self.num_classes - 1).to('cpu', self._bin_dtype)
                     if self.mode == 'class' else None)
            if self.mode == 'image':
                self._update_images(scores, valid)
            elif self.method == 'histogram':
                self._update_histogram(scores, index, valid)
            else:
                self._update_exact(scores, index, valid)

    def _update_histogram(self, scores, index, valid):
        width = self.num_bins + 2
        bins = histogram_bin_index(scores, self.num_bins, self._bin_dtype)
        if index is not None:
            bins.add_(index, alpha=width)
        if valid is not None:
            bins.masked_fill_(~valid, self._flat_counts.numel() - 1)   # the trash bin
        bins = bins.view(-1)
        # index_add_ of a stride-0 "ones" needs no (groups x bins) temporary, unlike bincount
        self._flat_counts.index_add_(
            0, bins, torch.ones(1, dtype=torch.int64).expand(bins.numel()))
        _track_overflow(self._overflow_max, scores, index, valid)

    def _update_exact(self, scores, index, valid):
        if valid is not None:
            scores = scores[valid]
        if self.mode == 'pixel':
            self._exact[0].append(scores.reshape(-1).clone())
            return
        index = index.reshape(-1) if valid is None else index[valid]
        scores = scores.reshape(-1)
        for k in torch.unique(index).tolist():
            self._exact[k].append(scores[index == k])

    def _update_images(self, scores, valid):
        images = scores.shape[0]
        scores = scores.reshape(images, -1)
        valid = None if valid is None else valid.reshape(images, -1)
        n = (torch.full((images,), scores.shape[1], dtype=torch.int64) if valid is None
             else valid.sum(1))
        if self.method == 'exact':
            q = [conformal_quantile(s if valid is None else s[v], self.alpha)
                 for s, v in zip(scores, valid if valid is not None else [None] * images)]
        else:
            width = self.num_bins + 2
            bins = histogram_bin_index(scores, self.num_bins)
            image = torch.arange(images).unsqueeze(1).expand_as(bins)
            bins.add_(image, alpha=width)
            if valid is not None:
                bins.masked_fill_(~valid, images * width)
            counts = torch.bincount(bins.view(-1), minlength=images * width + 1)
            overflow_max = torch.full((images,), -math.inf, dtype=torch.float64)
            _track_overflow(overflow_max, scores, image, valid)
            q = histogram_quantile(counts[:images * width].view(images, width), self.alpha,
                                   overflow_max).tolist()
        self._image_q.extend(q)
        self._image_n.extend(n.tolist())

    # ------------------------------------------------------------------ thresholds
    @property
    def num_groups(self):
        """1 in 'pixel' mode, K in 'class' mode, the number of images seen in 'image' mode."""
        if self.mode == 'image':
            return len(self._image_n)
        return self.num_classes if self.mode == 'class' else 1

    def group_counts(self):
        """n per group: the number of calibration pixels, (G,) int64."""
        if self.mode == 'image':
            return torch.tensor(self._image_n, dtype=torch.int64)
        if self._counts is not None:
            return self._counts.sum(1)
        return torch.tensor([sum(c.numel() for c in chunks) for chunks in self._exact],
                            dtype=torch.int64)

    def group_alphas(self):
        """alpha per group (a list of floats)."""
        if self.mode == 'image':
            return [self.alpha] * len(self._image_n)
        return list(self._alphas)

    def group_thresholds(self):
        """q per group, (G,) float64; +inf for a group with fewer than (1 - alpha) / alpha
        pixels. In 'image' mode these are the per-image q_i, before aggregation."""
        self._require_data()
        if self.mode == 'image':
            return torch.tensor(self._image_q, dtype=torch.float64)
        if self._counts is not None:
            return histogram_quantile(self._counts, self._alphas, self._overflow_max)
        # torch.cat makes the one copy that selection may reorder
        return torch.tensor([
            kth_smallest_inplace(torch.cat(chunks).numpy() if chunks else np.empty(0),
                                 conformal_rank(sum(c.numel() for c in chunks), alpha))
            for chunks, alpha in zip(self._exact, self._alphas)], dtype=torch.float64)

    def thresholds(self):
        """q_k per class, (K,) float64: class k is in C(x) when s_k(x) <= q_k.

        The same q for every class in 'pixel' and 'image' mode, the class's own q in 'class'
        mode. Raises ValueError on an empty calibration set.
        """
        q = self.group_thresholds()
        if self.mode == 'class':
            return q
        if self.mode == 'image':
            q = torch.tensor([self._aggregate_images(q)], dtype=torch.float64)
        return q.expand(self.num_classes).clone()

    def _aggregate_images(self, q):
        seen = torch.tensor(self._image_n) > 0
        if self.image_aggregation == 'conformal':
            return conformal_quantile(q[seen], self.alpha)
        finite = sorted(q[seen & torch.isfinite(q)].tolist())
        if not finite:
            return math.inf
        if self.image_aggregation == 'median':
            return finite[(len(finite) - 1) // 2]
        return math.fsum(finite) / len(finite)  # exactly rounded, so independent of order

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
        if not (dist.is_available() and dist.is_initialized()):
            return merged
        device = torch.device('cpu')
        if dist.get_backend(group) == 'nccl':
            device = torch.device('cuda', torch.cuda.current_device())
        if merged._counts is not None:
            counts = merged._counts.to(device)
            overflow = merged._overflow_max.to(device)
            dist.all_reduce(counts, dist.ReduceOp.SUM, group=group)
            dist.all_reduce(overflow, dist.ReduceOp.MAX, group=group)
            merged._counts.copy_(counts)
            merged._overflow_max.copy_(overflow)
        if merged._exact is not None or merged.mode == 'image':
            payload = (merged._exact_state(), merged._image_q, merged._image_n)
            gathered = [None] * dist.get_world_size(group)
            dist.all_gather_object(gathered, payload, group=group)
            merged.reset()
            for exact, image_q, image_n in gathered:
                if exact is not None:
                    for chunks, scores in zip(merged._exact, exact):
                        chunks.append(scores)
                merged._image_q.extend(image_q)
                merged._image_n.extend(image_n)
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

    def _exact_state(self):
        if self._exact is None:
            return None
        return [torch.cat(chunks) if chunks else torch.empty(0) for chunks in self._exact]

    def state_dict(self):
        """Everything needed to resume or reuse the calibration (tensors and plain types, so it
        fits in a checkpoint loaded with ``weights_only=True``)."""
        return dict(
            format=STATE_FORMAT, version=STATE_VERSION, config=self.config(),
            counts=None if self._counts is None else self._counts.clone(),
            overflow_max=None if self._overflow_max is None else self._overflow_max.clone(),
            exact_scores=self._exact_state(),
            image_q=torch.tensor(self._image_q, dtype=torch.float64),
            image_n=torch.tensor(self._image_n, dtype=torch.int64))

    def load_state_dict(self, state):
        """Restore the calibration data of :meth:`state_dict`.

        The structure (num_classes, mode, method, score, num_bins, ignore_index) must match;
        alpha and image_aggregation are threshold-time choices and stay those of ``self``, so
        a saved histogram can be thresholded at another alpha.
        """
        if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
            raise ValueError('not a ConformalCalibrator state (missing format '
                             f"'{STATE_FORMAT}')")
        if state.get('version') != STATE_VERSION:
            raise ValueError(f"unsupported calibrator state version {state.get('version')!r}, "
                             f'this code reads version {STATE_VERSION}')
        mine, theirs = self.config(), state['config']
        for key in ('num_classes', 'mode', 'method', 'score', 'num_bins', 'ignore_index'):
            if mine[key] != theirs[key]:
                raise ValueError(
                    f'cannot load a calibration made with {key}={theirs[key]!r} into a '
                    f'calibrator with {key}={mine[key]!r}; build it with the same {key} '
                    '(or use ConformalCalibrator.from_state_dict)')
        self.reset()
        if self._counts is not None:
            self._counts.copy_(state['counts'])
            self._overflow_max.copy_(state['overflow_max'])
        if self._exact is not None:
            for chunks, scores in zip(self._exact, state['exact_scores']):
                if scores.numel():
                    chunks.append(scores.clone())
        self._image_q = [float(q) for q in state['image_q']]
        self._image_n = [int(n) for n in state['image_n']]

    @classmethod
    def from_state_dict(cls, state):
        """A calibrator with the configuration (alpha included) and data of ``state``."""
        calibrator = cls(**state['config'])
        calibrator.load_state_dict(state)
        return calibrator

    def copy(self):
        return type(self).from_state_dict(self.state_dict())

    def to_json_dict(self, group_names=None):
        """JSON-ready description: config, per-group n and q, per-class q, and the data.

        +inf thresholds are written as null with ``"q_infinite": true``.
        """
        data = self.state_dict()
        out = dict(format=STATE_FORMAT, version=STATE_VERSION, config=data['config'])
        counts = self.group_counts()
        if int(counts.sum()) > 0:
            q = self.group_thresholds()
            names = group_names or self.group_names()
            out['groups'] = [
                dict(name=name, n=int(n), alpha=a, q=_json_float(qg),
                     q_infinite=math.isinf(qg), n_min=min_calibration_size(a))
                for name, n, a, qg in zip(names, counts.tolist(), self.group_alphas(),
                                          q.tolist())]
            out['thresholds'] = [_json_float(v) for v in self.thresholds().tolist()]
        else:
            out['groups'], out['thresholds'] = [], None
        if data['counts'] is not None:
            out['histograms'] = []
            for hist, top in zip(data['counts'], data['overflow_max'].tolist()):
                nonzero = hist.nonzero().view(-1)
                out['histograms'].append(dict(
                    bins=nonzero.tolist(), counts=hist[nonzero].tolist(),
                    overflow_max=_json_float(top)))
        if data['exact_scores'] is not None:
            out['exact_scores'] = [s.tolist() for s in data['exact_scores']]
            out['exact_dtype'] = str(data['exact_scores'][0].dtype).replace('torch.', '')
        if self.mode == 'image':
            out['images'] = dict(q=[_json_float(v) for v in self._image_q], n=self._image_n)
        return out

    def save_json(self, path, group_names=None):
        """Write :meth:`to_json_dict` to ``path`` (strict JSON: no NaN or Infinity)."""
        with open(path, 'w') as f:
            json.dump(self.to_json_dict(group_names), f, allow_nan=False)

    @classmethod
    def from_json_dict(cls, data):
        if data.get('format') != STATE_FORMAT:
            raise ValueError(f"not a ConformalCalibrator JSON (format '{STATE_FORMAT}' missing)")
        calibrator = cls(**data['config'])
        state = calibrator.state_dict()
        if state['counts'] is not None:
            for g, hist in enumerate(data['histograms']):
                state['counts'][g, torch.tensor(hist['bins'], dtype=torch.int64)] = \
                    torch.tensor(hist['counts'], dtype=torch.int64)
                top = hist['overflow_max']
                state['overflow_max'][g] = -math.inf if top is None else top
        if state['exact_scores'] is not None:
            dtype = getattr(torch, data['exact_dtype'])
            state['exact_scores'] = [torch.tensor(s, dtype=dtype) for s in data['exact_scores']]
        if calibrator.mode == 'image':
            state['image_q'] = torch.tensor(
                [math.inf if v is None else v for v in data['images']['q']],
                dtype=torch.float64)
            state['image_n'] = torch.tensor(data['images']['n'], dtype=torch.int64)
        calibrator.load_state_dict(state)
        return calibrator

    @classmethod
    def load_json(cls, path):
        """A calibrator restored from :meth:`save_json`, ready to threshold or to update."""
        with open(path) as f:
            return cls.from_json_dict(json.load(f))

    def group_names(self, class_names=None):
        if self.mode == 'pixel':
            return ['all pixels']
        if self.mode == 'class':
            return list(class_names) if class_names else [
                f'class {k}' for k in range(self.num_classes)]
        return [f'image {i}' for i in range(len(self._image_n))]

    def __repr__(self):
        return (f'{type(self).__name__}(num_classes={self.num_classes}, alpha={self.alpha}, '
                f"mode='{self.mode}', score='{self.score_fn.name}', method='{self.method}', "
                f'pixels={int(self.group_counts().sum())})')


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def _check_alphas(alpha, mode, num_classes):
    """(alpha as given, normalised to float / list of floats, alpha per fixed group)."""
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.tolist()
    elif hasattr(alpha, 'tolist') and not isinstance(alpha, (int, float)):
        alpha = alpha.tolist()  # numpy arrays and scalars
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
    alpha_fraction(alpha)
    alpha = float(alpha)
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


def _json_float(value):
    return None if math.isinf(value) or math.isnan(value) else float(value)
