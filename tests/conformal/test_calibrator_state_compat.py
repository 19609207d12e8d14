"""Calibrations saved before ConformalCalibrator was split into procedures still load, give the
same thresholds, and are written back byte for byte the same (JSON) and key for key (state).

calibrator_states_v1.json holds, per mode and method, the saved JSON, the state_dict
(tensors written as dtype, shape, values) and the thresholds the calibrator had computed.
"""
import json
import math
import os.path as osp

import pytest
import torch

from conformalsam_mmseg.conformal import ConformalCalibrator

with open(osp.join(osp.dirname(__file__), 'calibrator_states_v1.json')) as f:
    CASES = json.load(f)['cases']
IDS = [f"{c['config']['mode']}-{c['config']['method']}-{c['config']['num_bins']}-"
       f"{c['config']['image_aggregation']}" for c in CASES]
NAMES = ['background', 'road', 'sky']


def _floats(values):
    return [math.inf if v is None else v for v in values]


def _tensor(data):
    if data is None:
        return None
    if isinstance(data, list):
        return [_tensor(d) for d in data]
    dtype = getattr(torch, data['dtype'])
    values = _floats(data['values']) if dtype.is_floating_point else data['values']
    return torch.tensor(values, dtype=dtype).reshape(data['shape'])


def _state(case):
    return {k: v if k in ('format', 'version', 'config') else _tensor(v)
            for k, v in case['state'].items()}


def _equal(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def test_every_mode_and_method_is_covered():
    kinds = {(c['config']['mode'], c['config']['method']) for c in CASES}
    assert kinds == {(m, k) for m in ('pixel', 'class', 'image')
                     for k in ('histogram', 'exact')}
    assert any(c['state'] is None for c in CASES)   # a default-resolution JSON-only case


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_saved_json_loads_to_the_same_thresholds(case):
    calibrator = ConformalCalibrator.from_json_dict(case['json'])
    assert calibrator.config() == case['config']
    assert calibrator.thresholds().tolist() == _floats(case['thresholds'])
    assert calibrator.group_thresholds().tolist() == _floats(case['group_thresholds'])
    assert calibrator.group_counts().tolist() == case['group_counts']
    names = NAMES if calibrator.mode == 'class' else None
    assert json.dumps(calibrator.to_json_dict(names)) == json.dumps(case['json'])


@pytest.mark.parametrize('case', [c for c in CASES if c['state'] is not None],
                         ids=[i for i, c in zip(IDS, CASES) if c['state'] is not None])
def test_saved_state_dict_loads_and_is_written_back_unchanged(case):
    state = _state(case)
    calibrator = ConformalCalibrator.from_state_dict(state)
    assert calibrator.thresholds().tolist() == _floats(case['thresholds'])
    assert calibrator.group_counts().tolist() == case['group_counts']
    written = calibrator.state_dict()
    assert sorted(written) == sorted(state)
    for key in state:
        assert _equal(written[key], state[key]), key
    # loading into a calibrator built by hand gives the same thresholds
    twin = ConformalCalibrator(**case['config'])
    twin.load_state_dict(state)
    assert torch.equal(twin.thresholds(), calibrator.thresholds())
