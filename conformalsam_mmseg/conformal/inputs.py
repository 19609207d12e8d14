"""Input checks shared by calibration and filtering: every error names the problem and the fix."""
import torch

from .quantile import decimal_fraction

IGNORE_INDEX = 255


def as_float_maps(x, what='probabilities'):
    """``x`` as a float32/float64 tensor (half precision is widened so scores are computed in
    float32 at calibration and at filtering alike)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        raise ValueError(
            f'{what} must be a floating-point tensor, got dtype {x.dtype}; apply softmax to the '
            'annotator logits (or convert with .float())')
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x


def batched_maps(x, what='probabilities'):
    """(B, K, H, W) view of ``x`` given as (B, K, H, W) or (K, H, W)."""
    if x.dim() == 3:
        return x.unsqueeze(0)
    if x.dim() == 4:
        return x
    raise ValueError(
        f'{what} must have shape (B, K, H, W) or (K, H, W), got {tuple(x.shape)}')


def check_calibration_pair(x, labels, num_classes, is_scores):
    """Check ``x`` against ``labels`` and return them batched.

    ``x`` is (B, K, H, W) / (K, H, W) probabilities or per-class scores, or, when ``is_scores``
    and it has the labels' shape, the true-class scores s_y(x) themselves.

    Returns ``(x, labels, true_class_given)`` with labels (B, H, W).
    """
    what = 'scores' if is_scores else 'probabilities'
    x = as_float_maps(x, what)
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f'labels must be an integer tensor of class indices (255 = ignore), got dtype '
            f'{labels.dtype}; convert with .long()')
    if labels.dim() not in (2, 3):
        raise ValueError(
            f'labels must have shape (B, H, W) or (H, W), got {tuple(labels.shape)}')
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
        if x.dim() in (2, 3):
            x = x.unsqueeze(0)
    if is_scores and x.shape == labels.shape:
        return x, labels, True
    if x.dim() != 4:
        raise ValueError(
            f'{what} of shape {tuple(x.shape)} do not fit labels of shape '
            f'{tuple(labels.shape)}: expected (B, K, H, W) with labels (B, H, W), or (K, H, W) '
            'with labels (H, W)' + (', or true-class scores shaped like the labels'
                                    if is_scores else ''))
    if x.shape[1] != num_classes:
        raise ValueError(
            f'{what} have {x.shape[1]} classes (dim 1 of shape {tuple(x.shape)}) but the '
            f'calibrator was built with num_classes={num_classes}; use the same class list for '
            'both')
    if x.shape[0] != labels.shape[0] or x.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f'{what} of shape {tuple(x.shape)} do not match labels of shape '
            f'{tuple(labels.shape)}: batch size and H x W must agree; resize the probabilities '
            "to the label size (e.g. F.interpolate(..., mode='bilinear')) before calibrating")
    return x, labels, False


def check_probabilities(probs, tol):
    """Probabilities must be >= 0 and sum to 1 over dim 1 at every pixel, within ``tol``."""
    lowest = float(probs.min()) if probs.numel() else 0.0
    if lowest < -tol:   # NaN is reported by the sum check below
        raise ValueError(
            f'probabilities must be >= 0 (smallest value: {lowest:.3g}, tolerance {tol:g}); '
            'apply softmax to the logits, or pass check_probs=False to calibrate on scores '
            'that are not probabilities')
    deviation = float((probs.sum(1) - 1).abs_().max()) if probs.numel() else 0.0
    # written as "not (ok)" so that NaN fails the check too
    if not deviation <= tol:
        raise ValueError(
            f'probabilities must sum to 1 over the K classes at every pixel (largest deviation '
            f'from 1: {deviation:.3g}, tolerance {tol:g}); apply softmax to the logits, or pass '
            "check_probs=False for un-normalised annotator scores such as SEEM's")


def check_filter_probabilities(probs, tol, function):
    """The annotator's probabilities given to a filter must be finite and >= 0 (within
    ``tol``); they need not sum to 1 (top-k caches, SEEM's scores, padding). One pass."""
    if probs.numel() == 0:
        return
    lowest, highest = (float(v) for v in torch.aminmax(probs))
    # written as "not (ok)" so that NaN fails the check too
    if not (lowest >= -tol and highest < float('inf')):
        raise ValueError(
            f'{function}: probs must be finite and >= 0 (found values in [{lowest:.3g}, '
            f'{highest:.3g}], tolerance {tol:g}); apply softmax or sigmoid to the annotator '
            'logits, or pass check_probs=False to filter other scores')


def check_labels(labels, num_classes, ignore_index):
    """Validate label values and split them for indexing.

    Returns ``(index, valid)``: ``index`` int64 with ignored pixels mapped to class
    ``num_classes - 1`` so it can index the class dimension, and ``valid`` the bool mask of
    labeled pixels, or None when no pixel is ignored.
    """
    if labels.numel() == 0:
        return labels.to(torch.int64), None
    lowest, highest = (int(v) for v in torch.aminmax(labels))
    if lowest >= 0 and highest < num_classes:
        return labels.to(torch.int64), None
    if lowest >= 0 and highest <= max(ignore_index, 255):
        # one counting pass finds every out-of-range value
        values = torch.bincount(labels.reshape(-1), minlength=highest + 1)
        values[:num_classes] = 0
        if 0 <= ignore_index <= highest:
            values[ignore_index] = 0
        bad = values.nonzero().view(-1)
    else:
        bad = torch.unique(labels[((labels < 0) | (labels >= num_classes))
                                  & (labels != ignore_index)])
    if bad.numel():
        raise ValueError(
            f'labels hold values {bad[:10].tolist()} outside the {num_classes} classes '
            f'0..{num_classes - 1} and the ignore index {ignore_index}; map them to a class or '
            f"to {ignore_index} (check num_classes and the dataset's label conversion, e.g. "
            'reduce_zero_label)')
    index = labels.clamp(0, num_classes - 1).to(torch.int64)
    return index, labels != ignore_index


def check_open_unit(name, value, meaning):
    """``value`` as a float strictly between 0 and 1, else a ValueError naming the option.

    numpy scalars and 0-d arrays are read at their shortest decimal (``np.float32(0.05)`` is
    0.05), as :func:`.decimal_fraction` does, so they give the Python float's results."""
    try:
        v = float(decimal_fraction(value))
    except (TypeError, ValueError):
        raise ValueError(f'{name} must be a number strictly between 0 and 1 ({meaning}), got '
                         f'{value!r}') from None
    if not 0 < v < 1:
        raise ValueError(f'{name} must lie strictly between 0 and 1 ({meaning}), got {v!r}')
    return v
