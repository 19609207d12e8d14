"""Synthetic annotators with a known error structure, and brute-force risk computations, for
the risk-control tests.

An image has ``pixels`` labeled pixels. Each pixel's predicted class k is drawn from the
image's class proportions (class k is absent from an image with probability ``absent[k]``),
its confidence c ~ U(c_min, 1) and it is wrong with probability
min(1, d_i * slope[k] * (1 - c)), where d_i ~ U(0.5, 1.5) is the image's difficulty: pixels of
one image share d_i, so they are not exchangeable, images are.
"""
import math
from fractions import Fraction

import numpy as np
import torch


def draw_images(rng, images, pixels, slope, absent, c_min=0.4):
    """(conf (I, P) float32, pred (I, P) int64, wrong (I, P) bool) as numpy arrays."""
    k = len(slope)
    present = rng.random((images, k)) >= np.asarray(absent)
    present[np.arange(images), rng.integers(0, k, images)] = True
    weights = present * rng.random((images, k))
    weights /= weights.sum(1, keepdims=True)
    u = rng.random((images, pixels))
    pred = (u[:, :, None] > np.cumsum(weights, 1)[:, None, :]).sum(2).clip(0, k - 1)
    conf = rng.uniform(c_min, 1.0, (images, pixels)).astype(np.float32)
    difficulty = rng.uniform(0.5, 1.5, (images, 1))
    p_wrong = np.minimum(1.0, difficulty * np.asarray(slope)[pred] * (1 - conf))
    wrong = rng.random((images, pixels)) < p_wrong
    return conf, pred, wrong


def as_probs_and_labels(conf, pred, wrong, num_classes):
    """(probs (I, K, 1, P), labels (I, 1, P)) whose argmax is ``pred`` with probability
    ``conf`` (the other classes share the rest, so the argmax is unique for conf > 1/K) and
    whose ground truth is ``pred`` where right, another class where wrong."""
    conf_t = torch.from_numpy(conf)
    pred_t = torch.from_numpy(pred)
    rest = ((1 - conf_t) / (num_classes - 1)).unsqueeze(1).expand(-1, num_classes, -1)
    probs = rest.clone().scatter_(1, pred_t.unsqueeze(1), conf_t.unsqueeze(1))
    labels = torch.where(torch.from_numpy(wrong), (pred_t + 1) % num_classes, pred_t)
    return probs.unsqueeze(2), labels.unsqueeze(1)


def per_image_losses(conf, pred, wrong, thresholds, risk, group=None):
    """Brute force, straight from the definitions: (n, T) losses of the images of ``group``
    (None: all pixels; k: pixels predicted k, images where k is predicted), at ``thresholds``.
    ``conf``, ``pred``, ``wrong`` are lists of 1-d numpy arrays, one per image (labeled pixels
    only)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)[:, None]
    rows = []
    for c, p, w in zip(conf, pred, wrong):
        mine = np.ones_like(p, dtype=bool) if group is None else p == group
        if not mine.any():
            continue
        kept = mine[None, :] & (c.astype(np.float64)[None, :] >= thresholds)   # (T, P)
        bad = (kept & w[None, :]).sum(1)
        if risk == 'kept_error':
            rows.append([int(b) / int(mine.sum()) for b in bad])
        else:
            rows.append([int(b) / int(k) if k else 0.0 for b, k in zip(bad, kept.sum(1))])
    return rows


def crc_passes(losses_at_t, target):
    """n/(n+1) R_n + 1/(n+1) <= target, in exact rationals of the exactly rounded sum."""
    n = len(losses_at_t)
    return Fraction(math.fsum(losses_at_t)) + 1 <= Fraction(repr(target)) * (n + 1)


def binomial_cdf_exact(k, n, p):
    p = Fraction(repr(p))
    return float(sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1)))


def hb_pvalue_reference(risk_hat, n, target):
    """p_HB typed again from the definition, with an exact rational binomial CDF."""
    a = min(risk_hat, target)
    kl = ((a * math.log(a / target) if a > 0 else 0.0)
          + (1 - a) * math.log((1 - a) / (1 - target)))
    return min(math.exp(-n * kl),
               math.e * binomial_cdf_exact(math.ceil(n * risk_hat), n, target))
