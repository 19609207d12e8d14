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


def crop_size(cfg):
    model = cfg.model.get('host', cfg.model)   # a ConformalSAM model: its host's
    pre = model.data_preprocessor
    return pre.get('size') or pre.data_preprocessor.size


def train_pipelines(cfg):
    dataset = cfg.train_dataloader.dataset
    if dataset.type == 'SemiDataset':
        return [dataset.labeled.pipeline, dataset.unlabeled.pipeline]
    return [dataset.pipeline]


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses_and_imports_the_plugin(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['conformalsam_mmseg'],
                                      allow_failed_imports=False)
    import_modules_from_strings(**cfg.custom_imports)
    assert cfg.train_cfg.max_iters > 0
    crop = crop_size(cfg)
    for pipeline in train_pipelines(cfg):
        assert any(t.get('crop_size') == crop for t in pipeline)


def test_custom_imports_register_every_component():
    from mmseg.registry import DATASETS, TRANSFORMS
    import_modules_from_strings(imports=['conformalsam_mmseg'])
    for name in ('CamVidDataset', 'SyntheticShapesDataset'):
        assert DATASETS.get(name) is not None, name
    for name in ('LoadCheckedAnnotations', 'RandomRescale', 'LoadDummySegMap', 'MultiBranch',
                 'ColorJitter', 'GaussianBlur'):
        assert TRANSFORMS.get(name) is not None, name
    from mmseg.registry import DATA_SAMPLERS, HOOKS, MODELS
    for name in ('SemiSegmentor', 'UniMatch', 'SelfReliance', 'MultiBranchDataPreprocessor',
                 'EfficientNetLite0', 'DynamicLossWeighter', 'ExponentialDecayWeight'):
        assert MODELS.get(name) is not None, name
    assert DATASETS.get('SemiDataset') is not None
    assert DATA_SAMPLERS.get('MultiSourceSampler') is not None
    assert HOOKS.get('MeanTeacherHook') is not None


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
    assert cfg.model.decode_head.type == 'UniMatchDeepLabV3PlusHead'  # as UniMatch's rows
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


@pytest.mark.parametrize('split, crop, unlabeled', [
    ('voc-classic-92', 321, 10490), ('voc-blended-1-8', 513, 9259)])
def test_unimatch_configs_follow_the_authors(split, crop, unlabeled):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'unimatch',
                                   f'unimatch_deeplabv3plus_r101_{split}.py'))
    assert cfg.model.type == 'UniMatch'
    assert cfg.model.segmentor.backbone.depth == 101
    semi = cfg.model.semi_train_cfg
    assert semi.conf_thresh == 0.95 and semi.fp_dropout == 0.5 and semi.cutmix_prob == 0.5
    assert semi.loss_weights == dict(x=0.5, s1=0.125, s2=0.125, fp=0.25)
    assert crop_size(cfg) == (crop, crop)
    assert cfg.train_cfg.max_iters == 80 * math.ceil(unlabeled / 8)
    name = split.replace('voc-', 'voc_').replace('classic-', 'classic/').replace(
        'blended-', 'blended/')
    data = cfg.train_dataloader.dataset
    assert data.labeled.ann_file == f'splits/{name}/labeled.txt'
    assert data.unlabeled.ann_file == f'splits/{name}/unlabeled.txt'
    # 2 labeled + 2 unlabeled + 2 CutMix-source images per GPU, 4 GPUs: the authors' 8 + 8.
    assert cfg.train_dataloader.sampler.source_ratio == [2, 4]
    assert cfg.model.segmentor.decode_head.type == 'UniMatchDeepLabV3PlusHead'
    assert cfg.model.segmentor.decode_head.align_corners


UNIMATCH_CONFIGS = [p for p in CONFIGS if osp.basename(osp.dirname(p)) == 'unimatch']


@pytest.mark.parametrize('path', UNIMATCH_CONFIGS, ids=osp.basename)
def test_unimatch_configs_mix_the_u_images_and_perturb_the_head_levels(path):
    """The authors' CutMix source (the batch u's images again) and feature perturbation
    (the levels the head reads); VOC and ADE20K on the authors' head, CamVid on the network
    of every CamVid row."""
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.sampler.source_repeats == [1, 2]
    semi = cfg.model.get('semi_train_cfg') or {}
    assert semi.get('mix_source', 'same_images') == 'same_images'
    assert semi.get('fp_levels', 'head') == 'head'
    head = cfg.model.segmentor.decode_head
    if 'camvid' in path:
        shared = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models',
                                          'deeplabv3plus_efficientnet-lite0.py'))
        assert head == shared.model.decode_head
    else:
        assert head.type == 'UniMatchDeepLabV3PlusHead' and head.align_corners


def test_a_config_inherits_and_overrides_one_field():
    """What a user writes to change one thing of a UniMatch config."""
    import tempfile
    base = osp.join(REPO, 'configs', 'unimatch', 'unimatch_deeplabv3plus_effl0_camvid-1-8.py')
    with tempfile.TemporaryDirectory() as tmp:
        child = osp.join(tmp, 'child.py')
        with open(child, 'w') as f:
            f.write(f"_base_ = '{base}'\n"
                    "model = dict(semi_train_cfg=dict(conf_thresh=0.9))\n"
                    "train_dataloader = dict(dataset=dict(\n"
                    "    labeled=dict(ann_file='my/labeled.txt')))\n")
        cfg = Config.fromfile(child)
    assert cfg.model.semi_train_cfg.conf_thresh == 0.9
    assert cfg.model.semi_train_cfg.sup_loss.type == 'ProbOhem'   # the rest is kept
    assert cfg.model.segmentor.backbone.type == 'EfficientNetLite0'
    data = cfg.train_dataloader.dataset
    assert data.labeled.ann_file == 'my/labeled.txt'
    assert data.unlabeled.ann_file == 'splits/camvid/1-8/unlabeled.txt'
    assert data.labeled.pipeline[-1].type == 'MultiBranch'
