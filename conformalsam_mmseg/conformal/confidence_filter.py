"""The confidence label rule: the annotator's argmax where its probability reaches t, else 255.

For a pixel x with class probabilities p(x), the annotator's label is its argmax
k(x) = argmax_k p_k(x) (ties to the lowest class index) and its confidence c(x) = p_k(x)(x).
With one threshold t_k per class (the same t for every class in 'pixel' mode)

    label(x) = k(x)   if c(x) >= t_k(x),     255 otherwise.

t = +inf keeps nothing, t <= 0 keeps everything. The comparison c >= t is the real-number one:
t (float64) is rounded up to the probabilities' precision before comparing, so float32
probabilities are kept exactly when their value is >= t. This is the rule whose error the risk
calibration (:mod:`.risk_calibrator`) controls, and the rule of the fixed-threshold baselines.

The argmax is computed one image and one class plane at a time (strictly greater replaces, so
ties keep the lower class), the same way for calibration and for filtering; on CPU this is
much faster than ``torch.argmax`` along dim 1.
"""
import math

import numpy as np
import torch

from .inputs import (IGNORE_INDEX, as_float_maps, batched_maps,
                     check_filter_probabilities)


@torch.no_grad()
def annotator_argmax(probs):
    """(confidence c(x), label k(x)) of (B, K, H, W) probabilities: (B, H, W) of the input's
    dtype and (B, H, W) int64; ties go to the lowest class index."""
    probs = batched_maps(as_float_maps(probs))
    best = probs[:, 0].clone()
    label = torch.zeros(best.shape, dtype=probs.dtype, device=probs.device)
    greater = torch.empty_like(best)
    for k in range(1, probs.shape[1]):
        value = probs[:, k]
        torch.gt(value, best, out=greater)
        torch.maximum(best, value, out=best)
        torch.lerp(label, torch.full((), float(k), dtype=label.dtype,
                                     device=label.device).expand_as(label), greater, out=label)
    return best, label.long()


def check_confidence_thresholds(thresholds, num_classes):
    """t_k per class as a (K,) float64 tensor (one number is used for every class); NaN is an
    error, +inf means 'keep nothing'."""
    t = torch.as_tensor(thresholds, dtype=torch.float64).detach().cpu().reshape(-1)
    if t.numel() == 1:
        t = t.expand(num_classes).clone()
    if t.numel() != num_classes:
        raise ValueError(
            f'got {t.numel()} confidence thresholds for {num_classes} classes; pass one '
            'threshold per class (RiskCalibrator.thresholds()) or a single one')
    if torch.isnan(t).any():
        raise ValueError('confidence thresholds contain NaN; calibrate first')
    return t


def round_up_to_dtype(value, dtype):
    """The smallest ``dtype`` number >= ``value`` (so x >= value <=> x >= rounded for every
    ``dtype`` number x); infinities stay as they are."""
    if math.isinf(value):
        return value
    np_float = np.float64 if dtype == torch.float64 else np.float32
    with np.errstate(over='ignore'):
        r = np_float(value)
    if float(r) < value:
        r = np.nextafter(r, np_float(np.inf))
    return float(r)


@torch.no_grad()
def confidence_pseudo_labels(probs, thresholds, *, ignore_index=IGNORE_INDEX, dtype=None,
                             check_probs=True, prob_tol=1e-3):
    """Pseudo-labels of the confidence rule (module docstring).

    Args:
        probs: the annotator's probabilities (B, K, H, W) or (K, H, W) (need not sum to 1).
        thresholds: t_k per class (K,), or one number.
        ignore_index: label of rejected pixels (255).
        dtype: output dtype; uint8 by default when every label fits, else int64.
        check_probs: check that ``probs`` are finite and >= -``prob_tol``.

    Returns:
        (B, H, W) (or (H, W)) labels: k(x) where kept, ``ignore_index`` elsewhere.
    """
    x = as_float_maps(probs)
    unbatched = x.dim() == 3
    x = batched_maps(x)
    if check_probs:
        check_filter_probabilities(x, prob_tol, 'confidence_pseudo_labels')
    num_classes = x.shape[1]
    if 0 <= ignore_index < num_classes:
        raise ValueError(f'ignore_index={ignore_index} is a class index; use 255')
    t = check_confidence_thresholds(thresholds, num_classes)
    largest = max(num_classes - 1, ignore_index)
    if dtype is None:
        dtype = torch.uint8 if largest <= 255 else torch.int64
    elif dtype.is_floating_point or largest > torch.iinfo(dtype).max:
        raise ValueError(f'dtype {dtype} cannot hold labels up to {largest}; use torch.long')
    rounded = [round_up_to_dtype(v, x.dtype) for v in t.tolist()]
    common = rounded[0] if len(set(rounded)) == 1 else None
    table = torch.tensor(rounded, dtype=x.dtype, device=x.device)
    out = torch.empty(x.shape[:1] + x.shape[2:], dtype=dtype, device=x.device)
    for b in range(x.shape[0]):   # one image at a time: its planes stay in cache
        conf, label = annotator_argmax(x[b:b + 1])
        bar = common if common is not None else table[label]
        kept = conf >= bar   # bar holds dtype numbers (or +-inf): compared exactly
        out[b] = label.masked_fill_(~kept, ignore_index)[0].to(dtype)
    return out[0] if unbatched else out
