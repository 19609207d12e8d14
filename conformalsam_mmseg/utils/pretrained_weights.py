"""Which pretrained weights a config downloads, where they go, and a clear error offline.

mmengine downloads ``model.pretrained`` / ``init_cfg=dict(type='Pretrained', checkpoint=URL)``
when the model's weights are initialised (at the start of ``runner.train()``), into torch's hub
folder (``torch.hub.get_dir()/checkpoints/<file name of the URL>``; ``$TORCH_HOME`` moves it).
Without internet that is a bare ``URLError``. :func:`explain_weight_downloads` turns it into an
error naming each missing file, where to put it, and how to train without it.
"""
import contextlib
import os.path as osp
import socket
import urllib.error
from typing import NamedTuple
from urllib.parse import urlparse

REMOTE_PREFIXES = ('http://', 'https://', 'open-mmlab://', 'openmmlab://', 'mmcls://',
                   'torchvision://')


class RemoteWeights(NamedTuple):
    key: str        # where the config names it, e.g. model.pretrained
    source: str     # as written in the config
    url: str        # what is downloaded
    path: str       # where mmengine (torch.hub) keeps it


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be downloaded."""


def _resolve_url(source):
    from mmengine.runner.checkpoint import (get_external_models, get_mmcls_models,
                                            get_torchvision_models)
    if source.startswith(('http://', 'https://')):
        return source
    name = source.split('://', 1)[1]
    if source.startswith(('open-mmlab://', 'openmmlab://')):
        urls = get_external_models()
    elif source.startswith('mmcls://'):
        urls = get_mmcls_models()
    else:
        urls = get_torchvision_models()
    url = urls.get(name)
    return url if url and url.startswith(('http://', 'https://')) else None


def _references(node, key):
    if isinstance(node, dict):
        pretrained = node.get('pretrained')
        if isinstance(pretrained, str):
            yield f'{key}.pretrained', pretrained
        init_cfg = node.get('init_cfg')
        for i, init in enumerate(init_cfg if isinstance(init_cfg, list) else [init_cfg]):
            if isinstance(init, dict) and init.get('type') == 'Pretrained' \
                    and isinstance(init.get('checkpoint'), str):
                where = f'{key}.init_cfg' + (f'[{i}]' if isinstance(init_cfg, list) else '')
                yield where, init['checkpoint']
        for k, v in node.items():
            if k not in ('init_cfg',):
                yield from _references(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _references(v, f'{key}[{i}]')


def remote_weights(cfg):
    """The weights ``cfg.model`` downloads: a list of :class:`RemoteWeights`."""
    import torch
    found = []
    for key, source in _references(cfg.get('model') or {}, 'model'):
        if not source.startswith(REMOTE_PREFIXES):
            continue
        url = _resolve_url(source)
        if url is None:
            continue
        name = osp.basename(urlparse(url).path)
        found.append(RemoteWeights(key, source, url,
                                   osp.join(torch.hub.get_dir(), 'checkpoints', name)))
    return found


def missing_weights_message(missing, reason):
    lines = [f'cannot download the pretrained weights ({reason}).']
    for w in missing:
        shown = w.source if w.source == w.url else f'{w.source} = {w.url}'
        lines.append(
            f'  {w.key} = {shown}\n'
            f'    missing file: {w.path}\n'
            f'    fix: download it where there is internet and copy it to that path (the folder '
            'is torch.hub.get_dir()/checkpoints; $TORCH_HOME moves it), or point the config at '
            f'a local copy: --cfg-options {_override(w.key)}=/path/to/{osp.basename(w.path)}')
    nones = ' '.join(f'{_override(w.key, none=True)}=None' for w in missing)
    lines.append(f'To train without pretrained weights (from scratch): --cfg-options {nones}')
    lines.append('See docs/training.md, "Pretrained weights offline".')
    return '\n'.join(lines)


def _override(key, none=False):
    """The --cfg-options key that replaces (or, with ``none``, drops) one reference."""
    if key.endswith('.pretrained'):
        return key
    base = key.split('.init_cfg')[0]
    return f'{base}.init_cfg' if none else f'{base}.init_cfg.checkpoint'


@contextlib.contextmanager
def explain_weight_downloads(cfg):
    """Around building and training: a failed download of weights the config names (and that
    are not in torch's hub folder yet) raises :class:`PretrainedWeightsError` saying what to do."""
    missing = [w for w in remote_weights(cfg) if not osp.isfile(w.path)]
    try:
        yield missing
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        if not missing:
            raise
        raise PretrainedWeightsError(missing_weights_message(missing, e)) from e
