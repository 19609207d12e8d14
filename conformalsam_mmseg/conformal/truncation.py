"""How much a top-k annotator cache truncates the calibration scores.

A cache that keeps the top-k of K classes (k < K) reads back probability 0 for every other
class. A labeled pixel whose true class is outside the top-k therefore gets the LAC score
1 - 0 = 1, the largest possible. When a fraction f of the calibration pixels score 1, the
pixel-mode conformal quantile (rank ceil((n + 1)(1 - alpha)) of n scores) is 1 for every
alpha < f: the prediction sets keep every class whose probability is >= 0, i.e. the filter
rejects nothing. :func:`truncated_fraction` measures f from the dense probabilities a
calibration reads and the labels; :func:`truncation_message` says what it means and how to
fix it (remake the cache with every class).

Pure torch: imports nothing from OpenMMLab.
"""
from .inputs import IGNORE_INDEX, as_float_maps, check_calibration_pair, check_labels


def truncated_counts(probs, labels, topk, *, ignore_index=IGNORE_INDEX):
    """``(truncated, labeled)`` pixel counts, for accumulating over images.

    Args:
        probs: (B, K, H, W) or (K, H, W) dense probabilities as the calibration reads them
            (``topk_to_dense`` of a cache entry: classes outside the top-k are exactly 0).
        labels: (B, H, W) or (H, W) integer class indices, ``ignore_index`` = not labeled.
        topk: k, the classes the cache keeps per pixel (None: every class).
        ignore_index: the label of unlabeled pixels (255).

    ``truncated`` counts the labeled pixels whose true-class probability is exactly 0 when
    the cache keeps fewer than K classes (k < K); with every class cached it is 0, since
    nothing was cut (a probability that quantised to 0 is the annotator's, not the cache's).
    Under a top-k cache a top-k class whose probability quantised to 0 (below 1/510) reads
    exactly like a class outside the top-k and is counted too: its score is 1 all the same.
    """
    probs = as_float_maps(probs)
    num_classes = probs.shape[-3] if probs.dim() >= 3 else None
    if num_classes is None:
        raise ValueError(f'probabilities must have shape (B, K, H, W) or (K, H, W), got '
                         f'{tuple(probs.shape)}')
    probs, labels, _ = check_calibration_pair(probs, labels, num_classes, is_scores=False)
    if topk is not None and not 1 <= int(topk) <= num_classes:
        raise ValueError(f'topk must be in 1..{num_classes} (the number of classes) or None, '
                         f'got {topk}')
    index, valid = check_labels(labels, num_classes, ignore_index)
    labeled = int(index.numel() if valid is None else valid.sum())
    if topk is None or int(topk) >= num_classes or labeled == 0:
        return 0, labeled
    true_prob = probs.gather(1, index.unsqueeze(1)).squeeze(1)  # (B, H, W)
    cut = true_prob == 0
    if valid is not None:
        cut &= valid
    return int(cut.sum()), labeled


def truncated_fraction(probs, labels, topk, *, ignore_index=IGNORE_INDEX):
    """The fraction of labeled pixels whose true class is not in the cached top-k.

    Same arguments as :func:`truncated_counts`; 0.0 when there is no labeled pixel, and for a
    cache that keeps every class (``topk`` None or >= K).
    """
    truncated, labeled = truncated_counts(probs, labels, topk, ignore_index=ignore_index)
    return truncated / labeled if labeled else 0.0


def _percent(fraction):
    value = 100 * fraction
    if value == 0 or value >= 1:
        return f'{value:.1f}%'
    return f'{value:.2g}%'


def truncation_message(fraction, topk, num_classes):
    """What a truncated fraction means for the pixel-mode quantile, and the fix.

    ``fraction`` from :func:`truncated_fraction`, ``topk`` the cache's k (None: every class),
    ``num_classes`` K.
    """
    fraction = float(fraction)
    if not 0 <= fraction <= 1:
        raise ValueError(f'fraction must be in [0, 1], got {fraction}')
    if topk is None or int(topk) >= int(num_classes):
        return (f'the cache keeps all {num_classes} classes: no true class is cut from it, so '
                'no calibration score is raised to 1 by the cache')
    head = f'the cache keeps the top-{int(topk)} of {int(num_classes)} classes; '
    if fraction == 0:
        return head + ('no labeled pixel has its true class outside it, so the cache does not '
                       'force the pixel-mode quantile to 1 for any alpha')
    share = _percent(fraction)
    return head + (f'{share} of labeled pixels have their true class outside it, so the '
                   f'pixel-mode quantile is 1 (keeps everything) for every alpha below '
                   f'{share}; remake the cache with all classes (--topk {int(num_classes)})')
