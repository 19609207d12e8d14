"""Let torch >= 2.6 load mmengine checkpoints with ``weights_only=True``.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so torch's safe unpickler
refuses the message-hub objects and numpy values stored in every checkpoint's ``meta``.
Instead of switching the safe unpickler off, the few classes a checkpoint legitimately
holds are allow-listed. ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'min')``; a general ``getattr`` would let a crafted file reach any
attribute of any allowed object, so a ``getattr`` that resolves only those methods stands in
for it.
"""
import pickle

import numpy as np
import torch


def _numpy_globals():
    scalar_types = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                    np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                    np.float64]
    dtype_classes = [type(np.dtype(t)) for t in scalar_types]
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    return [np.ndarray, np.dtype, _reconstruct, scalar] + dtype_classes


def _mmengine_globals():
    from mmengine.logging import HistoryBuffer
    from mmengine.logging.message_hub import MessageHub
    from mmengine.config.config import ConfigDict
    from collections import OrderedDict, defaultdict
    return [HistoryBuffer, MessageHub, ConfigDict, OrderedDict, defaultdict]


def _history_buffer_getattr(obj, name, *default):
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and (name in HistoryBuffer._statistics_methods
                                 or name in ('min', 'max', 'current', 'mean')):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights_only checkpoint loading allows getattr only for HistoryBuffer statistics '
        f'methods, not {obj!r}.{name}; the checkpoint holds objects other than weights and '
        'mmengine training state.')


def register_checkpoint_safe_globals():
    """Allow-list what mmengine writes into checkpoints; idempotent."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 has no safe unpickler to configure
        return
    add(_numpy_globals() + _mmengine_globals() +
        [(_history_buffer_getattr, 'builtins.getattr'),
         (_history_buffer_getattr, '__builtin__.getattr')])
