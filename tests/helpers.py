"""Small configs for tests: the demo model on the generated shapes data, in a work dir."""
import os.path as osp

from mmengine.config import Config

from conftest import REPO

DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')


def shapes_config(data_root, work_dir, max_iters=4, batch_size=2, **overrides):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(work_dir)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.merge_from_dict(overrides)
    return cfg
