"""A few training iterations and an IoUMetric evaluation on real files from ../shared/data."""
import os
import os.path as osp

import numpy as np
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO, shared_data
from helpers import DEMO_CONFIG

import conformalsam_mmseg  # noqa: F401


def _tiny_model(num_classes, crop):
    model = Config.fromfile(DEMO_CONFIG).model
    model.decode_head.num_classes = num_classes
    model.data_preprocessor.size = crop
    return model


def _run(cfg, work_dir, iters=3):
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=iters, by_epoch=False)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, runner.val()


def _labels_seen(dataset):
    values = set()
    for i in range(len(dataset)):
        values |= set(np.unique(dataset[i]['data_samples'].gt_sem_seg.data.numpy()).tolist())
    return values


def test_voc_mini_through_the_voc_code_path(tmp_path):
    root = shared_data('voc_mini')
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'supervised', 'deeplabv3plus_r101_voc-classic-92.py'))
    cfg.model = _tiny_model(21, (97, 97))
    cfg.train_dataloader.dataset.pipeline[3].crop_size = (97, 97)
    for loader, split in (('train_dataloader', 'train'), ('val_dataloader', 'val')):
        ds = cfg[loader].dataset
        ds.data_root = root
        ds.data_prefix = dict(img_path='JPEGImages', seg_map_path='SegmentationClass')
        ds.ann_file = f'ImageSets/Segmentation/{split}.txt'
    cfg.test_dataloader = cfg.val_dataloader
    runner, metrics = _run(cfg, tmp_path)

    val_set = runner.val_dataloader.dataset
    assert len(val_set.metainfo['classes']) == 21
    # Palette PNGs must be read as class indices (VOC: bottle 5, bus 6, car 7, chair 9,
    # person 15, sofa 18), never as colours.
    seen = _labels_seen(val_set) | _labels_seen(runner.train_dataloader.dataset)
    assert seen <= set(range(21)) | {255}
    assert seen & {5, 6, 7, 9, 15, 18}
    assert 0 <= metrics['mIoU'] <= 100 and 0 < metrics['aAcc'] <= 100


def test_camvid_train_and_evaluate(tmp_path):
    root = shared_data('camvid')
    train_stems = sorted(f[:-4] for f in os.listdir(
        osp.join(root, 'images', 'train')))[:6]
    val_stems = sorted(f[:-4] for f in os.listdir(
        osp.join(root, 'images', 'val')))[:3]
    (tmp_path / 'train.txt').write_text('\n'.join(train_stems) + '\n')
    (tmp_path / 'val.txt').write_text('\n'.join(val_stems) + '\n')

    cfg = Config.fromfile(osp.join(REPO, 'configs', 'supervised',
                                   'deeplabv3plus_effl0_camvid-1-8.py'))
    cfg.model.data_preprocessor.size = (96, 96)  # the baseline's own pretrained model
    cfg.train_dataloader.dataset.pipeline[4].crop_size = (96, 96)
    for loader in ('train_dataloader', 'val_dataloader'):
        ds = cfg[loader].dataset
        ds.data_root = osp.dirname(root)
    cfg.train_dataloader.dataset.ann_file = str(tmp_path / 'train.txt')
    cfg.val_dataloader.dataset.ann_file = str(tmp_path / 'val.txt')
    cfg.test_dataloader = cfg.val_dataloader
    runner, metrics = _run(cfg, tmp_path / 'work')

    val_set = runner.val_dataloader.dataset
    assert len(val_set) == 3 and val_set.metainfo['classes'][3] == 'road'
    seen = _labels_seen(val_set)
    assert seen <= set(range(11)) | {255} and 3 in seen  # road is everywhere in CamVid
    assert 0 <= metrics['mIoU'] <= 100 and 0 < metrics['aAcc'] <= 100
