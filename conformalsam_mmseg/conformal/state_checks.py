"""Validation of a saved :class:`.ConformalCalibrator` state, in its tensor form
(``load_state_dict``) and its JSON form (``from_json_dict`` / ``load_json``).

Every problem raises ValueError naming the field (``histograms[2].counts``) and, through
``where``, the file or object it came from; nothing is loaded before the whole state passed.
"""
import math
import numbers

import torch

STATE_FORMAT = 'conformalsam.calibrator'
STATE_VERSION = 1
CONFIG_KEYS = ('num_classes', 'alpha', 'mode', 'score', 'method', 'num_bins',
               'image_aggregation', 'check_probs', 'prob_tol', 'ignore_index')


class _Checker:
    def __init__(self, where):
        self.where = where

    def fail(self, field, problem):
        raise ValueError(f'{self.where}: {field}: {problem}; save the calibration again with '
                         'ConformalCalibrator.save_json / state_dict')

    def field(self, data, key, prefix=''):
        if key not in data:
            self.fail(prefix + key, 'missing')
        return data[key]

    def is_list(self, value, field, length=None):
        if not isinstance(value, list):
            self.fail(field, f'expected a list, got {type(value).__name__}')
        if length is not None and len(value) != length:
            self.fail(field, f'expected {length} entries, got {len(value)}')
        return value

    def count(self, value, field):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            self.fail(field, f'expected a non-negative integer, got {value!r}')

    def number(self, value, field, null_ok=True):
        if value is None and null_ok:
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            self.fail(field, f'expected a number{" or null" if null_ok else ""}, got {value!r}')

    def tensor(self, value, field, shape=None, floating=None):
        if not isinstance(value, torch.Tensor):
            self.fail(field, f'expected a tensor, got {type(value).__name__}')
        if floating is not None and value.is_floating_point() != floating:
            self.fail(field, f'expected a {"floating-point" if floating else "integer"} '
                      f'tensor, got dtype {value.dtype}')
        if shape is not None and tuple(value.shape) != tuple(shape):
            self.fail(field, f'expected shape {tuple(shape)}, got {tuple(value.shape)}')
        if value.is_floating_point() and torch.isnan(value).any():
            self.fail(field, 'holds NaN')
        if not floating and value.numel() and int(value.min()) < 0:
            self.fail(field, f'holds negative counts ({int(value.min())})')
        return value


def check_header(data, where, what='state'):
    """``data`` is a dict with this code's format and version and a complete ``config``;
    returns the config."""
    c = _Checker(where)
    if not isinstance(data, dict):
        raise ValueError(f'{where}: not a ConformalCalibrator {what} (expected a dict with '
                         f"format '{STATE_FORMAT}', got {type(data).__name__})")
    if data.get('format') != STATE_FORMAT:
        raise ValueError(f"{where}: not a ConformalCalibrator {what} (format "
                         f"'{STATE_FORMAT}' missing, got {data.get('format')!r})")
    if data.get('version') != STATE_VERSION:
        raise ValueError(f"{where}: unsupported calibrator state version "
                         f"{data.get('version')!r}, this code reads version {STATE_VERSION}")
    config = c.field(data, 'config')
    if not isinstance(config, dict):
        c.fail('config', f'expected a dict, got {type(config).__name__}')
    for key in CONFIG_KEYS:
        c.field(config, key, 'config.')
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        c.fail('config', f'unknown keys {unknown}')
    return config


def num_fixed_groups(config):
    return config['num_classes'] if config['mode'] == 'class' else 1


def check_state_data(state, config, where):
    """The data entries of a state_dict (tensors) fit ``config``."""
    c = _Checker(where)
    if config['mode'] == 'image':
        q = c.tensor(c.field(state, 'image_q'), 'image_q', floating=True)
        c.tensor(c.field(state, 'image_n'), 'image_n', shape=q.shape, floating=False)
        if q.dim() != 1:
            c.fail('image_q', f'expected one value per image, got shape {tuple(q.shape)}')
        return
    groups = num_fixed_groups(config)
    if config['method'] == 'histogram':
        c.tensor(c.field(state, 'counts'), 'counts', (groups, config['num_bins'] + 2), False)
        c.tensor(c.field(state, 'overflow_max'), 'overflow_max', (groups,), True)
    else:
        scores = c.field(state, 'exact_scores')
        if not isinstance(scores, (list, tuple)) or len(scores) != groups:
            c.fail('exact_scores', f'expected a list of {groups} tensors (one per group), got '
                   f'{len(scores) if isinstance(scores, (list, tuple)) else type(scores).__name__}')
        for g, s in enumerate(scores):
            c.tensor(s, f'exact_scores[{g}]', floating=True)


def check_json_data(data, config, where):
    """The data entries of the JSON form fit ``config``."""
    c = _Checker(where)
    if config['mode'] == 'image':
        images = c.field(data, 'images')
        if not isinstance(images, dict):
            c.fail('images', f'expected a dict with q and n, got {type(images).__name__}')
        q = c.is_list(c.field(images, 'q', 'images.'), 'images.q')
        n = c.is_list(c.field(images, 'n', 'images.'), 'images.n', len(q))
        for i, (qi, ni) in enumerate(zip(q, n)):
            c.number(qi, f'images.q[{i}]')
            c.count(ni, f'images.n[{i}]')
        return
    groups = num_fixed_groups(config)
    if config['method'] == 'histogram':
        width = config['num_bins'] + 2
        for g, hist in enumerate(c.is_list(c.field(data, 'histograms'), 'histograms', groups)):
            name = f'histograms[{g}]'
            if not isinstance(hist, dict):
                c.fail(name, f'expected a dict, got {type(hist).__name__}')
            bins = c.is_list(c.field(hist, 'bins', name + '.'), name + '.bins')
            counts = c.is_list(c.field(hist, 'counts', name + '.'), name + '.counts', len(bins))
            for j, (b, k) in enumerate(zip(bins, counts)):
                if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < width:
                    c.fail(f'{name}.bins[{j}]', f'expected a bin index in 0..{width - 1} '
                           f'(num_bins={config["num_bins"]}), got {b!r}')
                c.count(k, f'{name}.counts[{j}]')
            if len(set(bins)) != len(bins):
                c.fail(name + '.bins', 'repeats a bin index')
            c.number(c.field(hist, 'overflow_max', name + '.'), name + '.overflow_max')
    else:
        dtype = c.field(data, 'exact_dtype')
        if dtype not in ('float32', 'float64'):
            c.fail('exact_dtype', f"expected 'float32' or 'float64', got {dtype!r}")
        for g, s in enumerate(c.is_list(c.field(data, 'exact_scores'), 'exact_scores', groups)):
            for j, v in enumerate(c.is_list(s, f'exact_scores[{g}]')):
                c.number(v, f'exact_scores[{g}][{j}]', null_ok=False)
