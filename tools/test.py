"""Evaluate a checkpoint on a config's test set, as mmseg's ``tools/test.py`` does."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

import conformalsam_mmseg  # noqa: F401  (registers components and checkpoint safe globals)
from conformalsam_mmseg.engine import check_current_form
from conformalsam_mmseg.utils import close_distributed, setup_cpu_distributed


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and eval) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='directory to save the predicted label maps (PNG, one per image)')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved; with it, '
        'predictions are drawn next to the ground truth')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg, show_dir):
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise KeyError(
            '--show-dir needs `default_hooks.visualization=dict(type='
            "'SegVisualizationHook')` in the config; add it to default_hooks.")
    hooks.visualization.draw = True
    hooks.visualization.interval = 1
    cfg.visualizer.save_dir = osp.join(cfg.work_dir, show_dir) \
        if not osp.isabs(show_dir) else show_dir
    return cfg


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint {args.checkpoint} does not exist; pass the path of a .pth '
            'written by tools/train.py (e.g. work_dirs/<config>/iter_N.pth).')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint

    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    try:
        check_current_form(cfg)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    setup_cpu_distributed(cfg, args.launcher)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    try:
        runner.test()
    finally:
        del runner  # its DDP wrapper holds the process group
        close_distributed()


if __name__ == '__main__':
    main()
