"""Every config parses, registers the plug-in, and holds the recipe it claims."""
import glob
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings

from conftest import REPO

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_there_are_configs():
    assert len(CONFIGS) >= 17


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses_and_imports_the_plugin(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['conformalsam_mmseg'],
                                      allow_failed_imports=False)
    import_modules_from_strings(**cfg.custom_imports)
    assert cfg.train_cfg.max_iters > 0
    crop = cfg.model.data_preprocessor.size
    assert any(getattr(t, 'get', lambda k: None)('crop_size') == crop
               for t in cfg.train_dataloader.dataset.pipeline)


def test_custom_imports_register_every_component():
    from mmseg.registry import DATASETS, TRANSFORMS
    import_modules_from_strings(imports=['conformalsam_mmseg'])
    for name in ('CamVidDataset', 'SyntheticShapesDataset'):
        assert DATASETS.get(name) is not None, name
    for name in ('LoadCheckedAnnotations', 'RandomRescale'):
        assert TRANSFORMS.get(name) is not None, name


@pytest.mark.parametrize('split, crop, unlabeled', [
    ('voc-classic-92', 321, 10490), ('voc-classic-1464', 321, 9118),
    ('voc-blended-1-16', 513, 9920), ('voc-blended-1-4', 513, 7936)])
def test_voc_baselines_follow_the_unimatch_recipe(split, crop, unlabeled):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'supervised',
                                   f'deeplabv3plus_r101_{split}.py'))
    assert cfg.model.data_preprocessor.size == (crop, crop)
    assert cfg.model.backbone.depth == 101
    assert cfg.model.backbone.strides == (1, 2, 2, 1)  # output stride 16
    assert cfg.model.decode_head.dilations == (1, 6, 12, 18)
    assert cfg.model.decode_head.c1_channels == 48
    assert cfg.optim_wrapper.optimizer.lr == 0.001
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.decode_head.lr_mult == 10
    assert cfg.param_scheduler[0].power == 0.9
    assert cfg.train_cfg.max_iters == 80 * math.ceil(unlabeled / 8)
    seg_dir = 'SegmentationClassAug' if 'blended' in split else 'SegmentationClass'
    assert cfg.train_dataloader.dataset.data_prefix.seg_map_path.endswith(seg_dir)


def test_ade20k_baseline_reduces_the_zero_label():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'supervised',
                                   'deeplabv3plus_r101_ade20k-1-64.py'))
    assert cfg.model.decode_head.num_classes == 150
    loads = [t for t in cfg.train_dataloader.dataset.pipeline
             if t.type == 'LoadCheckedAnnotations']
    assert loads[0].reduce_zero_label and loads[0].num_classes == 150
