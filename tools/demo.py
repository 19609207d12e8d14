"""The README's demo: generate the shapes data, train the demo config, print the val mIoU.

Runs on 2 CPU cores in a few minutes and needs nothing but the installed environment.
"""
import argparse
import os.path as osp
import time

from mmengine.config import Config
from mmengine.runner import Runner

from conformalsam_mmseg.datasets import make_shapes_dataset

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s)')
    return parser.parse_args()


def main():
    args = parse_args()
    start = time.time()
    data_root = make_shapes_dataset(osp.join(args.work_dir, 'data'))
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = args.work_dir
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
        cfg.default_hooks.checkpoint.interval = args.iters
    # Evaluate once, at the end.
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val()
    print(f'\nDemo: supervised DeepLabV3+ (narrow ResNet-18, from scratch) on the generated '
          f'shapes data, {cfg.train_cfg.max_iters} iterations, {time.time() - start:.0f} s')
    print(f'val mIoU: {metrics["mIoU"]:.2f}%  (aAcc {metrics["aAcc"]:.2f}%)  '
          f'work dir: {args.work_dir}')


if __name__ == '__main__':
    main()
