"""The README's demo: supervised vs ConformalSAM on generated data, on 2 CPU cores.

1. writes 160 + 40 images of discs, squares and triangles, and labels 1/8 of the training images;
2. labels every training image with the SimulatedAnnotator (ground truth plus realistic errors:
   confusions, boundary errors, missed small objects, over-confidence; a stand-in for SEEM,
   which is not available offline) through tools/generate_pseudo_labels.py;
3. trains the narrow DeepLabV3+ on the labeled images only (supervised);
4. trains ConformalSAM: calibration on the labeled images, Stage I on the conformally filtered
   annotator labels, Stage II (self-reliance) from 75% of the iterations;
5. prints both val mIoUs and the calibrated labels' kept-pixel ratio and precision.
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config
from mmengine.runner import Runner

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.datasets import make_shapes_dataset
from conformalsam_mmseg.datasets.splits import list_stems, seeded_split, write_ann_files

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SUPERVISED = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')
CONFORMALSAM = osp.join(REPO, 'configs', 'demo', 'conformalsam_shapes.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'demo'))
    parser.add_argument('--iters', type=int, default=1000, help='iterations of each run')
    parser.add_argument('--labeled', default='1/8', help='labeled fraction of the train images')
    parser.add_argument('--gap', type=float, default=0.2,
                        help='SimulatedAnnotator error level in [0, 1]')
    parser.add_argument('--num-train', type=int, default=160, help='generated training images')
    parser.add_argument('--num-val', type=int, default=40, help='generated val images')
    return parser.parse_args(argv)


def prepare_data(work_dir, labeled, gap, num_train=160, num_val=40):
    data_root = make_shapes_dataset(osp.join(work_dir, 'data'), num_train=num_train,
                                    num_val=num_val)
    stems = list_stems(osp.join(data_root, 'images', 'train'), suffix='.png')
    lab, unl = seeded_split(stems, labeled, seed=0)
    write_ann_files(osp.join(data_root, 'splits'), lab, unl, overwrite=True)
    cache = osp.join(data_root, 'annotator')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'generate_pseudo_labels.py'), SUPERVISED,
           '--annotator', 'simulated', '--annotator-cfg', f'gap={gap}', 'background_index=0',
           '--split', 'train', '--out', cache,
           '--cfg-options', f'train_dataloader.dataset.data_root={data_root}']
    subprocess.run(cmd, check=True, cwd=REPO)
    return data_root, len(lab), len(unl)


def configure(path, work_dir, data_root, iters):
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    cfg.train_cfg.max_iters = iters
    # no evaluation inside training (mmengine also evaluates at the last iteration, whatever
    # val_interval says): train() evaluates once, after training
    cfg.train_cfg.val_begin = iters + 1
    cfg.default_hooks.checkpoint.interval = iters
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    dataset = cfg.train_dataloader.dataset
    for part in ([dataset.labeled, dataset.unlabeled] if dataset.type == 'SemiDataset'
                 else [dataset]):
        part.data_root = data_root
    if dataset.get('annotator_cache'):
        dataset.annotator_cache = osp.join(data_root, 'annotator')
    return cfg


def train(cfg):
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.val()['mIoU']


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    data_root, n_lab, n_unl = prepare_data(args.work_dir, args.labeled, args.gap,
                                           args.num_train, args.num_val)

    sup = configure(SUPERVISED, osp.join(args.work_dir, 'supervised'), data_root, args.iters)
    sup.train_dataloader.dataset.ann_file = 'splits/labeled.txt'
    miou_sup = train(sup)
    csam_dir = osp.join(args.work_dir, 'conformalsam')
    miou_csam = train(configure(CONFORMALSAM, csam_dir, data_root, args.iters))

    with open(osp.join(csam_dir, 'calibration_report.json')) as f:
        report = json.load(f)
    filtering = report['filtering']
    print('\nDemo on generated shapes data (4 classes), '
          f'{n_lab} labeled + {n_unl} unlabeled training images, {args.iters} iterations each.')
    print(f'Annotator: SimulatedAnnotator (gap {args.gap}): ground truth plus simulated '
          'errors, standing in for SEEM.')
    print(f'  supervised only (labeled images):          val mIoU {miou_sup:6.2f}%')
    print(f'  ConformalSAM (Stage I + self-reliance):     val mIoU {miou_csam:6.2f}%')
    print(f'  calibrated annotator labels on the labeled images: kept-pixel ratio '
          f'{100 * filtering["kept_ratio"]:.1f}%, precision {100 * filtering["precision"]:.1f}%'
          + (f', held-out coverage {100 * report["holdout_coverage"]:.1f}% '
             f'(target >= {100 * (1 - report["alpha"]):.0f}%)'
             if report.get('holdout_coverage') is not None else ''))
    print(f'  report: {csam_dir}/calibration_report.json and .png; '
          f'{time.time() - start:.0f} s in all')


if __name__ == '__main__':
    main()
