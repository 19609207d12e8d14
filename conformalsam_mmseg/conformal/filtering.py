"""Prediction sets C(x) = {k : s_k(x) <= q_k} and the rules that turn them into pseudo-labels.

Set-to-label rules (every pixel they do not label gets the ignore index, 255):

- ``'foreground_first'`` (the paper's "class-conditional filtering", default): an empty set is
  rejected; a set holding a foreground class gets its most probable foreground class (so a set
  {background, cat} becomes cat); a set of background alone becomes background. With
  ``background_index=None`` (datasets without a background class) it is the most probable
  class of the set.
- ``'singleton'``: keep a pixel only when its set holds exactly one class.
- ``'argmax_in_set'``: keep the annotator's argmax when it lies in C(x).

"Most probable" ranks classes by the annotator's probability when probabilities are given, by
lowest score when only scores are; ties go to the lowest class index.

The work is done one image and one class plane at a time with preallocated (H, W) float
buffers, never materialising a (B, K, H, W) intermediate: on CPU that is an order of magnitude
faster than building the set tensor and calling argmax, whose kernel along dim 1 is slow. For
the LAC score on probabilities, membership 1 - p_k <= q_k is tested as p_k >= tau_k, with
tau_k the smallest floating-point p whose score, rounded as the calibrator rounds it, is
<= q_k; the two tests agree on every input, so filtering needs no score maps at all.
"""
import copy
import math

import numpy as np
import torch

from .inputs import (IGNORE_INDEX, as_float_maps, batched_maps,
                     check_filter_probabilities)
from .scores import LAC, get_score

RULES = ('foreground_first', 'singleton', 'argmax_in_set')


@torch.no_grad()
def prediction_sets(probs_or_scores, thresholds, *, score='lac', is_scores=False):
    """C(x) as a bool tensor shaped like the input: ``sets[b, k, h, w]`` is True when class k
    belongs to pixel (b, h, w)'s prediction set, i.e. s_k(x) <= q_k."""
    x = as_float_maps(probs_or_scores, 'scores' if is_scores else 'probabilities')
    unbatched = x.dim() == 3
    x = batched_maps(x)
    q = _rounded_thresholds(thresholds, x.shape[1], x.dtype)
    scores = x if is_scores else get_score(score).all_classes(x)
    sets = scores <= q.view(1, -1, 1, 1).to(x)
    return sets[0] if unbatched else sets


@torch.no_grad()
def filter_pseudo_labels(probs_or_scores, thresholds, *, rule='foreground_first',
                         background_index=0, score='lac', is_scores=False,
                         ignore_index=IGNORE_INDEX, dtype=None, check_probs=True,
                         prob_tol=1e-3):
    """Pseudo-labels of the annotator's pixels that pass conformal filtering.

    Args:
        probs_or_scores: the annotator's probabilities (B, K, H, W) or (K, H, W); with
            ``is_scores=True``, per-class scores s_k(x) of the same shape.
        thresholds: q_k per class, (K,) (``ConformalCalibrator.thresholds()``), or one number.
        rule: ``'foreground_first'``, ``'singleton'`` or ``'argmax_in_set'``.
        background_index: the background class for ``'foreground_first'`` (0 on VOC), or None.
        score: the nonconformity score the thresholds were calibrated with.
        ignore_index: label of rejected pixels.
        dtype: output dtype; by default uint8 when every label fits (K <= 255 and
            ignore_index <= 255), else int64. Use ``.long()`` for a loss that needs int64.
        check_probs: check that probabilities are finite and >= -``prob_tol`` (they need not
            sum to 1); not applied to ``is_scores=True`` input.

    Returns:
        (B, H, W) (or (H, W)) labels: a class index, or ``ignore_index`` where rejected.
    """
    if rule not in RULES:
        raise ValueError(f'rule must be one of {RULES}, got {rule!r}')
    x = as_float_maps(probs_or_scores, 'scores' if is_scores else 'probabilities')
    unbatched = x.dim() == 3
    x = batched_maps(x)
    if check_probs and not is_scores:
        check_filter_probabilities(x, prob_tol, 'filter_pseudo_labels')
    num_classes = x.shape[1]
    if background_index is not None and not 0 <= background_index < num_classes:
        raise ValueError(
            f'background_index={background_index} is not one of the {num_classes} classes; '
            'pass None for a dataset without a background class')
    if 0 <= ignore_index < num_classes:
        raise ValueError(f'ignore_index={ignore_index} is a class index; use 255')
    score_fn = get_score(score)
    if type(score_fn) is LAC and not is_scores:
        sets = _LACProbabilitySets(x, thresholds)
    else:
        sets = _ScoreSets(x, thresholds, score_fn, is_scores)
    largest_label = max(num_classes - 1, ignore_index)
    if dtype is None:
        dtype = torch.uint8 if largest_label <= 255 else torch.int64
    elif dtype.is_floating_point or largest_label > torch.iinfo(dtype).max:
        raise ValueError(f'dtype {dtype} cannot hold labels up to {largest_label}; use torch.long')

    labels = torch.empty(sets.shape, dtype=dtype, device=x.device)
    # one image at a time: its class planes are contiguous and the (H, W) buffers stay in cache
    for b in range(x.shape[0]):
        labels[b] = _set_to_label(sets.image(b), rule, background_index, ignore_index)[0]
    return labels[0] if unbatched else labels


def _set_to_label(sets, rule, background_index, ignore_index):
    """The rule applied to one image's sets; float labels (1, H, W)."""
    num_classes = sets.num_classes
    if rule == 'foreground_first':
        foreground = [k for k in range(num_classes) if k != background_index]
        best, label = _masked_argmax(sets, foreground, ignore_index)
        if background_index is not None:
            # background, when in the set, ranks below every foreground class in the set
            background = sets.masked_key(background_index, torch.empty_like(best))
            background.clamp_(max=-torch.finfo(best.dtype).max)
            _argmax_step(best, label, background, background_index, torch.empty_like(best))
        return label
    if rule == 'singleton':
        size = torch.zeros(sets.shape, dtype=sets.dtype, device=sets.device)
        member = torch.empty_like(size)
        for k in range(num_classes):
            size += sets.member(k, member)
        best, label = _masked_argmax(sets, range(num_classes), ignore_index)
        return _keep(label, torch.eq(size, 1, out=member), ignore_index)
    best, label = _argmax(sets, range(num_classes))
    return _keep(label, sets.member_at(best, label), ignore_index)


def _keep(label, kept, ignore_index):
    """``label`` where ``kept`` is 1, ``ignore_index`` where it is 0 (``kept`` float 0/1).

    Float masks and a lerp instead of a bool mask and masked_fill_: several times faster on CPU.
    """
    return torch.lerp(torch.full_like(label, float(ignore_index)), label, kept, out=label)


def _masked_argmax(sets, classes, ignore_index):
    """(max over ``classes`` of the ranking key among set members, the class achieving it);
    -inf and ``ignore_index`` where no class of ``classes`` is in the set."""
    classes = list(classes)
    if not classes:
        return (torch.full(sets.shape, -math.inf, dtype=sets.dtype, device=sets.device),
                torch.full(sets.shape, float(ignore_index), dtype=sets.dtype,
                           device=sets.device))
    tau = sets.common_tau(classes)
    if tau is not None:
        # one threshold for all: the most probable class is in the set or none of them is
        best, label = _argmax(sets, classes)
        _keep(label, torch.ge(best, tau, out=torch.empty_like(best)), ignore_index)
        return torch.threshold(best, _float_below(tau, best.dtype), -math.inf, out=best), label
    best = torch.full(sets.shape, -math.inf, dtype=sets.dtype, device=sets.device)
    label = torch.full(sets.shape, float(ignore_index), dtype=sets.dtype, device=sets.device)
    value, greater = torch.empty_like(best), torch.empty_like(best)
    for k in classes:
        _argmax_step(best, label, sets.masked_key(k, value), k, greater)
    return best, label


def _argmax(sets, classes):
    """The annotator's most probable class among ``classes`` (no set involved)."""
    classes = list(classes)
    best = sets.key(classes[0]).clone()
    label = torch.full(sets.shape, float(classes[0]), dtype=sets.dtype, device=sets.device)
    greater = torch.empty_like(best)
    for k in classes[1:]:
        _argmax_step(best, label, sets.key(k), k, greater)
    return best, label


def _argmax_step(best, label, value, k, greater):
    # strictly greater, so a tie keeps the earlier (lower) class; label is float so that the
    # update is one fused lerp instead of a (slower) bool mask and masked write
    torch.gt(value, best, out=greater)
    torch.maximum(best, value, out=best)
    torch.lerp(label, torch.full((), float(k), dtype=label.dtype,
                                 device=label.device).expand_as(label), greater,
               out=label)


class _Sets:
    """Set membership on the maps ``x`` (B, K, H, W); ``image(b)`` restricts it to image b."""

    def __init__(self, x):
        self.x = x
        self.num_classes = x.shape[1]
        self.shape = x.shape[:1] + x.shape[2:]
        self.dtype = x.dtype
        self.device = x.device

    def image(self, b):
        view = copy.copy(self)
        view._restrict(slice(b, b + 1))
        view.shape = (1, ) + self.shape[1:]
        return view

    def _restrict(self, index):
        self.x = self.x[index]

    def common_tau(self, classes):
        """tau when every class of ``classes`` is in C(x) exactly when p >= tau, else None."""
        return None


class _LACProbabilitySets(_Sets):
    """Membership for LAC on probabilities: k in C(x) <=> p_k(x) >= tau_k."""

    def __init__(self, probs, thresholds):
        super().__init__(probs)
        q = _rounded_thresholds(thresholds, self.num_classes, probs.dtype)
        self.tau = [_lac_prob_floor(v, probs.dtype) for v in q.tolist()]
        # torch.threshold keeps x > t, so t is the float just below tau
        self.below_tau = [_float_below(t, probs.dtype) for t in self.tau]

    def common_tau(self, classes):
        taus = {self.tau[k] for k in classes}
        return taus.pop() if len(taus) == 1 else None

    def key(self, k):
        return self.x[:, k]

    def masked_key(self, k, out):
        return torch.threshold(self.x[:, k], self.below_tau[k], -math.inf, out=out)

    def member(self, k, out):
        return torch.ge(self.x[:, k], self.tau[k], out=out)

    def member_at(self, best, label):
        """1.0 where the class ``label``, whose probability is ``best``, is in the set."""
        tau = self.common_tau(range(self.num_classes))
        if tau is None:
            tau = torch.tensor(self.tau, dtype=self.dtype, device=best.device)[label.long()]
        return torch.ge(best, tau, out=torch.empty_like(best))


class _ScoreSets(_Sets):
    """Membership from score maps: k in C(x) <=> s_k(x) <= q_k (any score function)."""

    def __init__(self, x, thresholds, score_fn, is_scores):
        super().__init__(x)
        self.scores = x if is_scores else score_fn.all_classes(x)
        self.ranking = -self.scores if is_scores else x  # higher = more probable
        self.q = _rounded_thresholds(thresholds, self.num_classes, x.dtype).to(x)

    def _restrict(self, index):
        super()._restrict(index)
        self.scores, self.ranking = self.scores[index], self.ranking[index]

    def key(self, k):
        return self.ranking[:, k]

    def masked_key(self, k, out):
        out.copy_(self.ranking[:, k])
        return out.masked_fill_(~(self.scores[:, k] <= self.q[k]), -math.inf)

    def member(self, k, out):
        return torch.le(self.scores[:, k], self.q[k], out=out)

    def member_at(self, best, label):
        index = label.long()
        score = self.scores.gather(1, index.unsqueeze(1)).squeeze(1)
        return torch.le(score, self.q[index], out=torch.empty_like(best))


def _rounded_thresholds(thresholds, num_classes, dtype):
    """q_k as float64, each rounded down to the largest ``dtype`` number <= q_k.

    Scores are ``dtype`` numbers, so s <= q_k holds exactly when s <= round_down(q_k): sets
    are those of the real-valued q_k, whatever precision the scores have.
    """
    q = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if q.numel() == 1:
        q = q.expand(num_classes)
    if q.numel() != num_classes:
        raise ValueError(
            f'got {q.numel()} thresholds for {num_classes} classes; pass one q per class '
            '(ConformalCalibrator.thresholds()) or a single q')
    if torch.isnan(q).any():
        raise ValueError('thresholds contain NaN; recalibrate')
    np_float = _np_float(dtype)
    rounded = []
    for v in q.tolist():
        with np.errstate(over='ignore'):
            r = np_float(v)
        if float(r) > v:
            r = np.nextafter(r, np_float(-np.inf))
        rounded.append(float(r))
    return torch.tensor(rounded, dtype=torch.float64)


def _lac_prob_floor(q, dtype):
    """The smallest p of ``dtype`` with fl(1 - p) <= q (-inf: every p; +inf: none).

    fl(1 - p) is non-increasing in p, so membership is monotone and a binary search over the
    floating-point numbers in order finds the boundary exactly.
    """
    np_float = _np_float(dtype)
    np_int = np.int32 if np_float is np.float32 else np.int64
    sign = 1 << (8 * np.dtype(np_int).itemsize - 1)
    one, q = np_float(1), np_float(q)

    def member(p):
        return one - p <= q

    def to_order(p):  # monotone map of finite floats to integers
        bits = int(np.array(p, np_float).view(np_int))
        return bits if bits >= 0 else -(bits & (sign - 1))

    def from_order(i):
        bits = i if i >= 0 else (-i) | sign
        return np.array(bits if bits < sign else bits - 2 * sign, np_int).view(np_float)[()]

    largest = np.finfo(np_float).max
    with np.errstate(over='ignore'):
        if member(-largest):
            return -math.inf
        if not member(largest):
            return math.inf
        lo, hi = to_order(-largest), to_order(largest)  # member(lo) false, member(hi) true
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if member(from_order(mid)):
                hi = mid
            else:
                lo = mid
    return float(from_order(hi))


def _float_below(value, dtype):
    """The largest ``dtype`` number below ``value`` (so x > below <=> x >= value)."""
    return float(np.nextafter(_np_float(dtype)(value), -np.inf))


def _np_float(dtype):
    return np.float64 if dtype == torch.float64 else np.float32
