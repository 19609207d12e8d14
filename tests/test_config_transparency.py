"""What a user reads is what trains: every ConformalSAM config shows its model, head options,
annotator cache and hooks; --cfg-options reach them; tools/print_config.py prints the config as
it trains; mmseg.apis.init_model loads a ConformalSAM checkpoint with its config."""
import glob
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import REPO

LEAVES = sorted(glob.glob(osp.join(REPO, 'configs', '*conformalsam*.py'))) + [
    osp.join(REPO, 'configs', 'demo', 'conformalsam_shapes.py')]
CAMVID = [p for p in LEAVES if 'camvid' in p]


def _name(path):
    return osp.relpath(path, REPO)


def test_there_is_a_leaf_per_host_and_data_set():
    names = {osp.basename(p) for p in LEAVES}
    for host in ('', 'unimatch_', 'allspark_'):
        for data in ('voc', 'ade20k', 'camvid'):
            assert f'{host}conformalsam_{data}.py' in names


@pytest.mark.parametrize('path', LEAVES, ids=_name)
def test_the_config_shows_the_conformalsam_model_and_hooks(path):
    cfg = Config.fromfile(path)
    assert 'runner_type' not in cfg and 'conformalsam' not in cfg
    model = cfg.model
    assert model.type == 'ConformalSAM'
    assert model.host.type in ('SelfReliance', 'UniMatch', 'AllSpark')
    head = model.pseudo_label_head
    assert head.type == 'AnnotatorPseudoLabelHead' and head.filter == 'conformal'
    assert head.alpha == 0.05 and head.mode == 'pixel' and head.rule == 'foreground_first'
    net = model.host.segmentor
    assert head.num_classes == net.decode_head.num_classes
    assert head.background_index == (0 if ('voc' in path or 'shapes' in path) else None)
    assert model.self_reliance_at == 0.75
    assert cfg.train_dataloader.dataset.annotator_cache
    assert [h.type for h in cfg.custom_hooks] == ['ConformalCalibrationHook', 'SelfRelianceHook']


@pytest.mark.parametrize('path', LEAVES, ids=_name)
def test_print_config_prints_the_model_and_the_trained_pipeline(path, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import print_config
    print_config.main([path, '--cfg-options', 'model.pseudo_label_head.alpha=0.1',
                       'model.self_reliance_at=None'])
    out = capsys.readouterr().out
    assert "type='ConformalSAM'" in out and "type='AnnotatorPseudoLabelHead'" in out
    pipeline = out.split('unlabeled_pipeline_as_trained = [', 1)[1]
    steps = [s for s in ('LoadImageFromFile', 'LoadAnnotatorOutput', 'RandomCrop',
                         'PadSegFields', 'PackAnnotatorOutput')]
    positions = [pipeline.index(f"type='{s}'") for s in steps]
    assert positions == sorted(positions)
    assert pipeline.count("type='PadSegFields'") == 1
    assert "alpha=0.1" in out.split('# What trains:')[1]
    assert 'self_reliance_at: None' in out


def test_cfg_options_reach_the_built_model(tmp_path):
    from mmseg.registry import MODELS
    import conformalsam_mmseg  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'conformalsam_camvid.py'))
    cfg.merge_from_dict({'model.pseudo_label_head.alpha': 0.1,
                         'model.pseudo_label_head.mode': 'class',
                         'model.pseudo_label_head.filter': 'risk',
                         'model.pseudo_label_head.risk_cfg.target_error': 0.02,
                         'model.self_reliance_at': 100})
    model = MODELS.build(cfg.model)
    head = model.pseudo_label_head
    assert (head.alpha, head.mode, head.filter) == (0.1, 'class', 'risk')
    assert head.risk_cfg['target_error'] == 0.02 and head.risk_cfg['delta'] == 0.1
    assert model.switch_iter(1000) == 100


def test_a_config_of_the_former_form_is_refused_with_the_new_lines(tmp_path, python):
    old = tmp_path / 'old.py'
    old.write_text(f"_base_ = ['{REPO}/configs/unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py']\n"
                   "runner_type = 'ConformalSAMRunner'\n"
                   "conformalsam = dict(annotator_cache='x', alpha=0.1, self_reliance_at=None)\n")
    proc = subprocess.run([python, 'tools/train.py', str(old)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    err = proc.stderr
    assert "type='ConformalSAM', host=_base_.model" in err
    assert 'conformalsam.alpha -> model.pseudo_label_head.alpha' in err
    assert 'conformalsam.annotator_cache -> train_dataloader.dataset.annotator_cache' in err
    assert 'conformalsam.self_reliance_at -> model.self_reliance_at' in err


def test_hook_options_that_moved_to_the_model_are_named():
    from conformalsam_mmseg.engine.hooks import ConformalCalibrationHook, SelfRelianceHook
    with pytest.raises(TypeError, match='model.pseudo_label_head.alpha'):
        ConformalCalibrationHook(alpha=0.1)
    with pytest.raises(TypeError, match='train_dataloader.dataset.annotator_cache'):
        ConformalCalibrationHook(cache_dir='x')
    with pytest.raises(TypeError, match='model.self_reliance_at=0.5'):
        SelfRelianceHook(switch_at=0.5)


def _checkpoint(cfg, path):
    """A checkpoint as tools/train.py writes it: the model's weights (perturbed, so loading is
    visible) and the dataset meta."""
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    g = torch.Generator().manual_seed(0)
    state = {k: (v + torch.rand(v.shape, generator=g).to(v.dtype) if v.is_floating_point()
                 else v) for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state, meta=dict(dataset_meta=dict(
        classes=tuple(f'c{i}' for i in range(model.pseudo_label_head.num_classes))))), path)
    return state


@pytest.mark.parametrize('path', LEAVES, ids=_name)
def test_init_model_loads_every_weight(path, tmp_path, mmseg_scope):
    from mmseg.apis import init_model
    cfg = Config.fromfile(path)
    ckpt = str(tmp_path / 'model.pth')
    state = _checkpoint(cfg, ckpt)
    model = init_model(path, ckpt, device='cpu')
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():   # (uncalibrated thresholds are NaN)
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0, equal_nan=True, msg=k)
    assert type(model).__name__ == 'ConformalSAM'


@pytest.mark.parametrize('path', CAMVID, ids=_name)
def test_inference_model_predicts_with_a_conformalsam_checkpoint(path, tmp_path, mmseg_scope):
    from mmseg.apis import inference_model, init_model
    cfg = Config.fromfile(path)
    ckpt = str(tmp_path / 'model.pth')
    _checkpoint(cfg, ckpt)
    model = init_model(path, ckpt, device='cpu')
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    result = inference_model(model, img)
    pred = result.pred_sem_seg.data
    assert pred.shape == (1, 90, 120) and int(pred.max()) < 11


def test_checked_labels_still_required_in_a_dataset_record():
    from conformalsam_mmseg.datasets.transforms import LoadCheckedAnnotations
    t = LoadCheckedAnnotations(num_classes=11)
    assert t(dict(img=np.zeros((4, 4, 3), np.uint8))) is not None   # inference: no record
    with pytest.raises(KeyError, match='data_prefix.seg_map_path'):
        t(dict(img_path='a.png', seg_fields=[], reduce_zero_label=False))


def test_the_print_config_recipe_of_docs_conformalsam_md_runs(python):
    from doc_recipes import bash_block, commands
    (line,) = commands(bash_block('docs/conformalsam.md', 'tools/print_config.py'))
    proc = subprocess.run(line.replace('python ', f'{python} ', 1), shell=True, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout.split('# What trains:')[1]
    assert 'host: AllSpark' in summary and "alpha=0.1" in summary
    assert "type='LoadAnnotatorOutput'" in proc.stdout.split('unlabeled_pipeline_as_trained')[1]
