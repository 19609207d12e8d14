"""Train N iterations, crash, resume to 2N: the weights equal an uninterrupted 2N run."""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from helpers import shapes_config

N = 3


class Crash(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class CrashAfterIterHook(Hook):
    """Simulates a machine dying right after iteration ``at`` was checkpointed."""
    priority = 'LOWEST'  # after CheckpointHook has written iter_<at>.pth

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise Crash(f'simulated crash after iteration {self.at}')


@HOOKS.register_module(force=True)
class RecordItersHook(Hook):
    seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        RecordItersHook.seen.append(runner.iter)


def _config(shapes_root, work_dir, **kw):
    cfg = shapes_config(shapes_root, work_dir, max_iters=2 * N, **kw)
    cfg.default_hooks.checkpoint.interval = N
    cfg.train_cfg.val_interval = 10 * N  # no validation: only the weights matter here
    cfg.randomness = dict(seed=123)
    return cfg


def _weights(work_dir):
    ckpt = torch.load(osp.join(work_dir, f'iter_{2 * N}.pth'), map_location='cpu')
    return ckpt['state_dict']


def test_resume_equals_uninterrupted_run(shapes_root, tmp_path):
    Runner.from_cfg(_config(shapes_root, tmp_path / 'straight')).train()

    crashed = _config(shapes_root, tmp_path / 'resumed',
                      custom_hooks=[dict(type='CrashAfterIterHook', at=N)])
    with pytest.raises(Crash):
        Runner.from_cfg(crashed).train()
    assert osp.isfile(tmp_path / 'resumed' / f'iter_{N}.pth')

    RecordItersHook.seen = []
    resumed = _config(shapes_root, tmp_path / 'resumed',
                      custom_hooks=[dict(type='RecordItersHook')])
    resumed.resume = True
    Runner.from_cfg(resumed).train()
    assert RecordItersHook.seen == list(range(N, 2 * N))

    straight, again = _weights(tmp_path / 'straight'), _weights(tmp_path / 'resumed')
    assert straight.keys() == again.keys()
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], rtol=0, atol=0, msg=name)


def test_checkpoint_loads_with_weights_only(shapes_root, tmp_path):
    """torch >= 2.6 refuses mmengine's checkpoints unless the safe globals are registered."""
    cfg = shapes_config(shapes_root, tmp_path, max_iters=1)
    Runner.from_cfg(cfg).train()
    ckpt = torch.load(osp.join(tmp_path, 'iter_1.pth'), map_location='cpu', weights_only=True)
    assert ckpt['meta']['iter'] == 1
    assert 'message_hub' in ckpt
