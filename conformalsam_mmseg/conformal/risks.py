"""Per-image risks of the confidence label rule, as functions of the threshold t.

For a calibration image i (the exchangeable unit) and a threshold t, with m_i its labeled
pixels (of the group: all, or those the annotator labels k), kept_i(t) those with confidence
>= t and wrong_i(t) the kept ones whose label is wrong:

- ``'kept_error'``:        L_i(t) = wrong_i(t) / m_i,
  the share of the image's labeled pixels that are kept AND wrong; non-increasing in t and
  bounded by B = 1, so conformal risk control applies (:mod:`.risk_control`);
- ``'false_label_rate'``:  L_i(t) = wrong_i(t) / kept_i(t)   (0 when kept_i(t) = 0),
  the error of the labels the image keeps (1 - their precision); bounded by 1 but not
  monotone in t, so it is calibrated by Learn-then-Test (:mod:`.learn_then_test`).

Each function maps the counts of :meth:`ConfidenceHistogram.counts` (labeled (n,), kept and
wrong (n, T)) to the (n, T) float64 matrix of L_i(t_j).
"""
import math

import torch

RISKS = {}


def register_risk(name, monotone):
    def wrap(fn):
        fn.risk_name, fn.monotone = name, monotone
        RISKS[name] = fn
        return fn
    return wrap


@register_risk('kept_error', monotone=True)
def kept_error(labeled, kept, wrong):
    return wrong.double() / labeled.double().unsqueeze(1)


@register_risk('false_label_rate', monotone=False)
def false_label_rate(labeled, kept, wrong):
    return wrong.double() / kept.double().clamp(min=1)   # wrong = 0 where kept = 0


def get_risk(name):
    if name not in RISKS:
        raise ValueError(f'risk must be one of {sorted(RISKS)}, got {name!r}: '
                         "'false_label_rate' (the error of the kept labels, Learn-then-Test) "
                         "or 'kept_error' (kept-and-wrong share of labeled pixels, conformal "
                         'risk control)')
    return RISKS[name]


def mean_risk(losses):
    """R_n(t_j) = (1/n) sum_i L_i(t_j), (T,) float64. The sum is exactly rounded
    (``math.fsum``), so it does not depend on the order the images came in nor on how ranks
    split them."""
    n = losses.shape[0]
    if n == 0:
        return torch.zeros(losses.shape[1], dtype=torch.float64)
    return torch.tensor([math.fsum(column) / n for column in losses.t().tolist()],
                        dtype=torch.float64)
