"""The weights_only allow-list admits mmengine's training state and nothing more."""
import io
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer

import conformalsam_mmseg  # noqa: F401  (registers the safe globals)


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_history_buffer_loads_with_weights_only():
    buf = HistoryBuffer()
    for v in (3.0, 1.0, 2.0):
        buf.update(v)
    loaded = _roundtrip({'hist': buf})['hist']
    assert loaded.min() == 1.0 and loaded.max() == 3.0 and loaded.mean() == 2.0


class _Evil:
    def __reduce__(self):
        return getattr, (HistoryBuffer, '__subclasses__')


def test_getattr_outside_history_buffer_is_refused():
    buf = io.BytesIO()
    torch.save({'x': _Evil()}, buf, pickle_protocol=2)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(buf, weights_only=True)
