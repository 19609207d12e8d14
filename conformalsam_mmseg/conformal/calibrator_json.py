"""The JSON form of a :class:`.ConformalCalibrator` (``save_json`` / ``load_json``).

Top level: ``format`` ('conformalsam.calibrator'), ``version`` (1), ``config`` (the
constructor arguments), ``groups`` (per group: name, n, alpha, q, q_infinite, n_min; empty
before any labeled pixel), ``thresholds`` (q per class, or null), and the data, by procedure
and method:

- ``histograms`` (streaming 'pixel' / 'class'): per group the non-zero ``bins`` and their
  ``counts`` and the ``overflow_max``;
- ``exact_scores`` and ``exact_dtype`` (exact 'pixel' / 'class'): every score per group;
- ``images`` ('image'): the per-image ``q`` and ``n``.

+inf is written as null (strict JSON: no NaN or Infinity).
"""
import math

import torch

from .quantile import min_calibration_size


def calibration_to_json(calibrator, group_names=None):
    """The JSON-ready dict of ``calibrator`` (module docstring)."""
    data = calibrator.state_dict()
    out = dict(format=data['format'], version=data['version'], config=data['config'])
    counts = calibrator.group_counts()
    if int(counts.sum()) > 0:
        q = calibrator.group_thresholds()
        names = group_names or calibrator.group_names()
        out['groups'] = [
            dict(name=name, n=int(n), alpha=a, q=json_float(qg), q_infinite=math.isinf(qg),
                 n_min=min_calibration_size(a))
            for name, n, a, qg in zip(names, counts.tolist(), calibrator.group_alphas(),
                                      q.tolist())]
        out['thresholds'] = [json_float(v) for v in calibrator.thresholds().tolist()]
    else:
        out['groups'], out['thresholds'] = [], None
    if data['counts'] is not None:
        out['histograms'] = []
        for hist, top in zip(data['counts'], data['overflow_max'].tolist()):
            nonzero = hist.nonzero().view(-1)
            out['histograms'].append(dict(
                bins=nonzero.tolist(), counts=hist[nonzero].tolist(),
                overflow_max=json_float(top)))
    if data['exact_scores'] is not None:
        out['exact_scores'] = [s.tolist() for s in data['exact_scores']]
        out['exact_dtype'] = str(data['exact_scores'][0].dtype).replace('torch.', '')
    if calibrator.mode == 'image':
        out['images'] = dict(q=[json_float(v) for v in data['image_q'].tolist()],
                             n=data['image_n'].tolist())
    return out


def state_from_json(state, data):
    """Fill ``state``, the empty state_dict of a calibrator built from ``data['config']``, with
    the calibration data of the JSON dict ``data``."""
    if state['counts'] is not None:
        for g, hist in enumerate(data['histograms']):
            state['counts'][g, torch.tensor(hist['bins'], dtype=torch.int64)] = \
                torch.tensor(hist['counts'], dtype=torch.int64)
            top = hist['overflow_max']
            state['overflow_max'][g] = -math.inf if top is None else top
    if state['exact_scores'] is not None:
        dtype = getattr(torch, data['exact_dtype'])
        state['exact_scores'] = [torch.tensor(s, dtype=dtype) for s in data['exact_scores']]
    if state['config']['mode'] == 'image':
        state['image_q'] = torch.tensor(
            [math.inf if v is None else v for v in data['images']['q']], dtype=torch.float64)
        state['image_n'] = torch.tensor(data['images']['n'], dtype=torch.int64)
    return state


def json_float(value):
    return None if math.isinf(value) or math.isnan(value) else float(value)
