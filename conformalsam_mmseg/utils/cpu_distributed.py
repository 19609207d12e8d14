"""Distributed training on machines without CUDA (gloo), e.g. ``dist_train.sh`` on a laptop.

mmengine 0.10.7 assumes a GPU per rank: ``init_dist`` calls ``torch.cuda.set_device`` and
the DDP wrapper is given ``device_ids=[LOCAL_RANK]``. Both fail on a CPU-only build. Here the
process group is initialised with gloo first (mmengine then skips its own init) and the
wrapper gets ``device_ids=None``, which is what DDP expects for CPU modules.

SyncBN needs CUDA ("SyncBatchNorm layers only work with GPU modules"); mmengine reverts it to
BN only for non-distributed runs. On a CPU-only distributed run the wrapper
(:class:`CPUDistributedDataParallel`) reverts it before DDP sees the model, and logs it: each
rank then normalises over its own batch, as plain BN does.
"""
import gc

import torch
import torch.distributed as torch_dist
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

DEFAULT_WRAPPER = 'MMDistributedDataParallel'
CPU_WRAPPER = 'CPUDistributedDataParallel'


def _sync_bn_layers(module):
    from mmcv.ops import SyncBatchNorm as MMCVSyncBatchNorm
    return [name for name, m in module.named_modules()
            if isinstance(m, (torch.nn.SyncBatchNorm, MMCVSyncBatchNorm))]


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU ranks: SyncBN layers become BN first (logged)."""

    def __init__(self, module, **kwargs):
        sync_bn = _sync_bn_layers(module)
        if sync_bn:
            print_log(
                f'CPU distributed run: {len(sync_bn)} SyncBN layers (e.g. {sync_bn[0]}) '
                'reverted to BN, which normalises over each rank\'s batch (SyncBN needs CUDA)',
                logger='current')
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, **kwargs)


def setup_cpu_distributed(cfg, launcher):
    """Prepare ``cfg`` for a CPU run under ``launcher``; a no-op with CUDA or without a launcher."""
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    if launcher != 'pytorch':
        raise ValueError(
            f"CPU distributed training supports --launcher pytorch (torchrun), got '{launcher}'; "
            'use tools/dist_train.sh, or run on GPUs for slurm/mpi.')
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'gloo')
    if backend != 'gloo':
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', DEFAULT_WRAPPER) == DEFAULT_WRAPPER:
        wrapper['type'] = CPU_WRAPPER
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return cfg


def close_distributed():
    """Destroy the process group, if any, once a run is over and the runner is deleted.

    Left to the interpreter's exit, gloo's threads can outlive it and abort the process
    ("terminate called without an active exception", exit code -6) after a run that succeeded.
    DDP's reducer holds the group too: delete the runner (its model wrapper) first, so that the
    group is really freed here.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()  # the wrapper and its reducer, if the caller has dropped the runner
        torch_dist.destroy_process_group()
