"""Train a segmentor from a config, as mmseg's ``tools/train.py`` does, on GPUs or CPUs."""
import argparse
import logging
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

import conformalsam_mmseg  # noqa: F401  (registers components and checkpoint safe globals)
from conformalsam_mmseg.engine import check_current_form
from conformalsam_mmseg.models import check_equal_batches
from conformalsam_mmseg.utils import close_distributed, setup_cpu_distributed
from conformalsam_mmseg.utils.crop_size_check import CropSizeError, check_crop_size
from conformalsam_mmseg.utils.pretrained_weights import (PretrainedWeightsError,
                                                         explain_weight_downloads)
from conformalsam_mmseg.utils.split_files import SplitFileError, check_split_files


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
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
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        else:
            assert optim_wrapper == 'OptimWrapper', (
                '`--amp` is only supported when the optimizer wrapper type is '
                f'`OptimWrapper` but got {optim_wrapper}.')
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    cfg.resume = args.resume
    try:
        check_current_form(cfg)  # a config of the former ConformalSAM form: how to write it
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    check_equal_batches(cfg)  # AllSpark's equal labeled/unlabeled batches, before building
    try:  # mistakes that would otherwise surface deep inside the first iterations
        check_crop_size(cfg)
        check_split_files(cfg)
    except (CropSizeError, SplitFileError) as e:
        raise SystemExit(f'error: {e}') from None
    setup_cpu_distributed(cfg, args.launcher)

    try:
        with explain_weight_downloads(cfg):
            runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
            try:
                runner.train()
            finally:
                del runner  # its DDP wrapper holds the process group
    except PretrainedWeightsError as e:
        raise SystemExit(f'error: {e}') from None
    finally:
        close_distributed()


if __name__ == '__main__':
    main()
