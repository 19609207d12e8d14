"""Shapes data with a labeled/unlabeled split and a SimulatedAnnotator cache, for ConformalSAM
tests; and the demo's ConformalSAM config pointed at them."""
import copy
import os
import os.path as osp

import cv2
from mmengine.config import Config

from conftest import REPO

CONFIG = osp.join(REPO, 'configs', 'demo', 'conformalsam_shapes.py')
CLASSES = ('background', 'disc', 'square', 'triangle')


def make_annotated_shapes(root, num_labeled=6, gap=0.4):
    from conformalsam_mmseg.annotators import SimulatedAnnotator, write_entry
    from conformalsam_mmseg.annotators.cache import write_manifest
    from conformalsam_mmseg.datasets import make_shapes_dataset
    from conformalsam_mmseg.datasets.splits import write_ann_files
    make_shapes_dataset(root, num_train=24, num_val=8, height=64, width=80, seed=0)
    stems = sorted(f[:-4] for f in os.listdir(osp.join(root, 'images', 'train')))
    write_ann_files(osp.join(root, 'splits'), stems[:num_labeled], stems[num_labeled:],
                    overwrite=True)
    cache = osp.join(root, 'annotator')
    annotator = SimulatedAnnotator(gap=gap, seed=0, background_index=0)
    for stem in stems:
        img = cv2.imread(osp.join(root, 'images', 'train', stem + '.png'))
        gt = cv2.imread(osp.join(root, 'labels', 'train', stem + '.png'), cv2.IMREAD_UNCHANGED)
        probs = annotator.annotate(img, CLASSES, img_path=stem, gt_seg_map=gt)
        write_entry(cache, probs, stem=stem, class_names=CLASSES, annotator=annotator.name,
                    topk=3, fsync=False)
    write_manifest(cache, dict(command='(made by the test fixture)', classes=list(CLASSES),
                               annotator=annotator.name, topk=3))
    return root


def conformalsam_config(data_root, work_dir, max_iters=4, switch_at=2, host='SelfReliance'):
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = str(work_dir)
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    data = cfg.train_dataloader.dataset
    data.labeled.data_root = data.unlabeled.data_root = str(data_root)
    data.annotator_cache = osp.join(str(data_root), 'annotator')
    cfg.model.self_reliance_at = switch_at
    cfg.custom_hooks[0].holdout_folds = 3
    cfg.train_dataloader.batch_size = cfg.train_dataloader.sampler.batch_size = 4
    cfg.train_dataloader.sampler.source_ratio = [2, 2]
    cfg.model.host.semi_train_cfg = dict(conf_thresh=0.5)
    if host == 'UniMatch':
        _as_unimatch(cfg)
    if host == 'AllSpark':
        _as_allspark(cfg)
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = 1000
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    return cfg


def _as_unimatch(cfg):
    """The same data and network under UniMatch: two strong views, a CutMix source batch."""
    cfg.model.host.type = 'UniMatch'
    cfg.model.host.semi_train_cfg = dict(conf_thresh=0.5)
    strong = [dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25,
                   prob=0.8),
              dict(type='GaussianBlur', sigma_range=(0.1, 2.0), prob=0.5),
              dict(type='PackSegInputs')]
    branches = ['sup', 'unsup_weak', 'unsup_strong1', 'unsup_strong2']
    data = cfg.train_dataloader.dataset
    data.labeled.pipeline[-1].branch_field = branches
    multi = data.unlabeled.pipeline[-1]
    multi.branch_field = branches
    multi.unsup_strong1 = copy.deepcopy(strong)
    multi.unsup_strong2 = copy.deepcopy(strong)
    cfg.train_dataloader.batch_size = cfg.train_dataloader.sampler.batch_size = 6
    cfg.train_dataloader.sampler.source_ratio = [2, 4]
    cfg.train_dataloader.sampler.source_repeats = [1, 2]  # the mix half: the u images again


def _as_allspark(cfg):
    """The same data under AllSpark on a tiny MiT (no download): equal batches, strong 'sup'."""
    from test_allspark import tiny_allspark_cfg
    allspark = tiny_allspark_cfg(memory_warmup_iters=1)
    allspark.segmentor.decode_head.num_classes = 4
    allspark.data_preprocessor = cfg.model.host.data_preprocessor
    allspark.segmentor.data_preprocessor = cfg.model.host.data_preprocessor.data_preprocessor
    cfg.model.host = allspark
    data = cfg.train_dataloader.dataset
    data.labeled.pipeline[-1].sup = [
        dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25,
             prob=0.8),
        dict(type='PackSegInputs')]
