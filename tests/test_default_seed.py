"""Every config has a seed (configs/_base_/default_runtime.py), so that --resume is exact as
docs/training.md says, without the user setting one."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO
from test_resume import Crash, CrashAfterIterHook  # noqa: F401  (registers the hook)

RUNTIME = osp.join(REPO, 'configs', '_base_', 'default_runtime.py')
DEMO = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')


def test_every_config_has_a_seed():
    configs = [p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
               if '_base_' not in p]
    assert len(configs) > 40
    for path in configs:
        assert Config.fromfile(path).get('randomness', {}).get('seed') is not None, path


def _config(shapes_root, work_dir, **overrides):
    """The demo's model and data with the runtime defaults' randomness, i.e. a config that
    does not set a seed itself."""
    cfg = Config.fromfile(RUNTIME)
    demo = Config.fromfile(DEMO).to_dict()
    demo.pop('randomness')
    cfg.merge_from_dict(demo)
    cfg.merge_from_dict(overrides)
    cfg.work_dir = str(work_dir)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(shapes_root)
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = 4
    cfg.train_cfg.val_interval = 100
    cfg.default_hooks.checkpoint.interval = 2
    return cfg


def test_resume_without_a_config_seed_equals_an_uninterrupted_run(shapes_root, tmp_path):
    Runner.from_cfg(_config(shapes_root, tmp_path / 'straight')).train()
    crashed = _config(shapes_root, tmp_path / 'resumed',
                      custom_hooks=[dict(type='CrashAfterIterHook', at=2)])
    with pytest.raises(Crash):
        Runner.from_cfg(crashed).train()
    resumed = _config(shapes_root, tmp_path / 'resumed')
    resumed.resume = True
    Runner.from_cfg(resumed).train()
    straight = torch.load(tmp_path / 'straight' / 'iter_4.pth', map_location='cpu')
    again = torch.load(tmp_path / 'resumed' / 'iter_4.pth', map_location='cpu')
    for name, value in straight['state_dict'].items():
        torch.testing.assert_close(again['state_dict'][name], value, rtol=0, atol=0, msg=name)
