"""tools/train.py on the VOC configs as a new user runs them: a shrunk crop, an empty split and
missing pretrained weights are named before (or instead of) failing deep inside training."""
import glob
import os
import os.path as osp
import subprocess

import pytest
from mmengine.config import Config

from conformalsam_mmseg.utils.crop_size_check import CropSizeError, check_crop_size
from conformalsam_mmseg.utils.pretrained_weights import remote_weights
from conformalsam_mmseg.utils.split_files import SplitFileError, check_split_files
from conftest import REPO
from voc_layout import SPLIT, make_voc_workspace

SUPERVISED_VOC = 'configs/supervised/deeplabv3plus_r101_voc-classic-366.py'
SMALL = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
         'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


def _train(cwd, python, *args, env=None, timeout=300):
    return subprocess.run([python, 'tools/train.py', *args], cwd=str(cwd), capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS='1',
                                                               **(env or {})))


def test_shipped_configs_pass_the_crop_check():
    configs = [p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
               if '_base_' not in p]
    assert len(configs) > 40
    for path in configs:
        check_crop_size(Config.fromfile(path))


def test_a_shrunk_crop_names_both_options(tmp_path, python):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'conformalsam_voc.py'))
    for part in ('labeled', 'unlabeled'):
        for t in cfg.train_dataloader.dataset[part].pipeline:
            if t.type == 'RandomCrop':
                t.crop_size = (64, 64)
            if t.type == 'PadSegFields':
                t.size = (64, 64)
    with pytest.raises(CropSizeError) as info:
        check_crop_size(cfg)
    message = str(info.value)
    assert 'train_dataloader.dataset.labeled.pipeline.3.crop_size = (64, 64)' in message
    assert 'model.host.data_preprocessor.data_preprocessor.size = (513, 513)' in message
    cfg.merge_from_dict({'model.host.data_preprocessor.data_preprocessor.size': (64, 64)})
    check_crop_size(cfg)  # the fix the message gives

    # tools/train.py refuses it before building anything
    make_voc_workspace(tmp_path)
    proc = _train(tmp_path, python, SUPERVISED_VOC, '--cfg-options',
                  'train_dataloader.dataset.pipeline.3.crop_size=(64,64)', *SMALL)
    assert proc.returncode == 1
    assert ('error: the training crop train_dataloader.dataset.pipeline.3.crop_size = (64, 64) '
            'differs from model.data_preprocessor.size = (321, 321)') in proc.stderr
    assert "--cfg-options model.data_preprocessor.size='(64,64)'" in proc.stderr


def test_an_empty_or_missing_split_file_is_named(tmp_path, python):
    make_voc_workspace(tmp_path)
    cfg = Config.fromfile(osp.join(REPO, SUPERVISED_VOC))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'data')
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'data')
    check_split_files(cfg)
    cfg.train_dataloader.dataset.ann_file = 'splits/voc_classic/92/labeled.txt'
    with pytest.raises(SplitFileError, match='92/labeled.txt does not exist'):
        check_split_files(cfg)

    (tmp_path / SPLIT / 'labeled.txt').write_text('\n')
    proc = _train(tmp_path, python, 'configs/conformalsam_voc.py', '--cfg-options', *SMALL)
    assert proc.returncode == 1
    assert ('error: train_dataloader.dataset.labeled.ann_file: the split file '
            'data/splits/voc_classic/366/labeled.txt lists no image') in proc.stderr
    assert 'need at least one array' not in proc.stderr


def test_pretrained_weights_are_found_in_the_configs():
    (r101,) = remote_weights(Config.fromfile(osp.join(REPO, SUPERVISED_VOC)))
    assert r101.key == 'model.pretrained' and r101.source == 'open-mmlab://resnet101_v1c'
    assert r101.url.endswith('/resnet101_v1c-e67eebb6.pth')
    assert r101.path.endswith(osp.join('hub', 'checkpoints', 'resnet101_v1c-e67eebb6.pth'))
    (mit,) = remote_weights(Config.fromfile(
        osp.join(REPO, 'configs', 'allspark', 'allspark_mit-b5_voc-classic-366.py')))
    assert mit.key == 'model.segmentor.backbone.init_cfg'
    assert mit.path.endswith('mit_b5_20220624-658746d9.pth')
    assert remote_weights(Config.fromfile(osp.join(
        REPO, 'configs', 'supervised', 'deeplabv3plus_effl0_camvid-1-8.py'))) == []


def test_offline_pretrained_weights_say_what_to_do(tmp_path, python):
    """Without internet (a proxy that refuses) and without the file: the error names the file,
    where it goes, and the override that trains without it (which trains:
    tests/test_training_recipes.py runs docs/training.md's command with it)."""
    make_voc_workspace(tmp_path)
    offline = dict(TORCH_HOME=str(tmp_path / 'torch_home'), http_proxy='http://127.0.0.1:9',
                   https_proxy='http://127.0.0.1:9', no_proxy='')
    args = [SUPERVISED_VOC, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            'train_cfg.max_iters=1', 'train_cfg.val_interval=10', *SMALL]
    proc = _train(tmp_path, python, *args, env=offline)
    assert proc.returncode == 1, proc.stderr[-2000:]
    path = osp.join(tmp_path, 'torch_home', 'hub', 'checkpoints', 'resnet101_v1c-e67eebb6.pth')
    assert 'error: cannot download the pretrained weights' in proc.stderr
    assert f'missing file: {path}' in proc.stderr
    assert ('To train without pretrained weights (from scratch): --cfg-options '
            'model.pretrained=None') in proc.stderr
    assert 'Traceback' not in proc.stderr
