"""tools/export_student.py: a trained model's network as a plain mmseg config + checkpoint that
init_model / inference_model load; plain-mmseg networks need no import of this package."""
import os.path as osp
import subprocess
import sys

import numpy as np
import torch
from mmengine.config import Config

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import export_student  # noqa: E402


def _trained_checkpoint(config, path):
    """A checkpoint as tools/train.py writes it, with weights moved off their init so that
    loading them is visible, and the dataset meta."""
    from mmseg.registry import DATASETS, MODELS
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    metainfo = DATASETS.get(cfg.val_dataloader.dataset.type).METAINFO   # as training saves it
    g = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())   # buffers (BN statistics) stay valid
    state = {k: (v + 0.01 * torch.randn(v.shape, generator=g).to(v.dtype) if k in params
                 else v) for k, v in model.state_dict().items()}
    torch.save(dict(state_dict=state, meta=dict(dataset_meta=dict(
        classes=metainfo['classes'], palette=metainfo['palette']))), path)
    return state


def test_exported_network_predicts_as_the_conformalsam_model(tmp_path):
    from mmseg.apis import inference_model, init_model
    config = osp.join(REPO, 'configs', 'conformalsam_camvid.py')
    ckpt = str(tmp_path / 'iter_10.pth')
    state = _trained_checkpoint(config, ckpt)
    cfg_path, ckpt_path, own = export_student.export(config, ckpt, str(tmp_path / 'out'))
    assert own == ['EfficientNetLite0']   # the config says it needs this package
    exported = Config.fromfile(cfg_path)
    assert exported.model.type == 'EncoderDecoder'
    assert exported.custom_imports.imports == ['conformalsam_mmseg']
    assert exported.model.backbone.pretrained is False
    weights = torch.load(ckpt_path, weights_only=False)['state_dict']
    assert set(weights) == {k[len('host.student.'):] for k in state
                            if k.startswith('host.student.')}
    img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    plain = inference_model(init_model(cfg_path, ckpt_path, device='cpu'), img)
    full = inference_model(init_model(config, ckpt, device='cpu'), img)
    torch.testing.assert_close(plain.seg_logits.data, full.seg_logits.data)
    assert torch.equal(plain.pred_sem_seg.data, full.pred_sem_seg.data)


def test_a_plain_mmseg_network_loads_without_this_package(tmp_path):
    config = osp.join(REPO, 'configs', 'conformalsam_voc.py')   # MiT-B5 + SegformerHead
    ckpt = str(tmp_path / 'iter_10.pth')
    state = _trained_checkpoint(config, ckpt)
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'export_student.py'), config,
                           ckpt, '--out', str(out), '--name', 'voc'], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'plain mmseg' in proc.stdout and 'init_model' in proc.stdout
    assert 'custom_imports' not in Config.fromfile(str(out / 'voc.py'))
    key = 'decode_head.conv_seg.weight'
    expected = state[f'host.student.{key}']
    check = (
        'import sys, torch\n'
        'from mmseg.apis import init_model\n'
        f"model = init_model({str(out / 'voc.py')!r}, {str(out / 'voc.pth')!r}, device='cpu')\n"
        "assert not any(m.startswith('conformalsam_mmseg') for m in sys.modules)\n"
        f"torch.save(model.state_dict()[{key!r}], {str(tmp_path / 'w.pt')!r})\n")
    proc = subprocess.run([sys.executable, '-c', check], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.equal(torch.load(tmp_path / 'w.pt'), expected)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    import pytest
    ckpt = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'backbone.x': torch.zeros(1)}), ckpt)
    with pytest.raises(SystemExit, match='no weights under "host.student."'):
        export_student.export(osp.join(REPO, 'configs', 'conformalsam_camvid.py'), ckpt,
                              str(tmp_path / 'out'))


def test_the_inference_recipes_of_docs_training_md_run(tmp_path):
    """docs/training.md, "Using a trained model": both snippets and the export command, as
    written, with the checkpoint, the output folder and the image put in tmp_path."""
    import cv2
    from doc_recipes import bash_block, commands, python_block
    config = 'configs/conformalsam_camvid.py'
    ckpt = str(tmp_path / 'iter_2000.pth')
    _trained_checkpoint(osp.join(REPO, config), ckpt)
    image = str(tmp_path / 'frame.jpg')
    cv2.imwrite(image, np.random.default_rng(0).integers(0, 255, (90, 120, 3), np.uint8))

    def offline(text):
        return (text.replace('work_dirs/conformalsam_camvid/iter_2000.pth', ckpt)
                .replace('data/camvid/images/val/0016E5_07959.jpg', image)
                .replace("'exported/", f"'{tmp_path}/exported/")
                .replace('--out exported', f'--out {tmp_path}/exported')
                .replace("'mask.png'", repr(str(tmp_path / 'mask.png')))
                .replace("'configs/", f"'{REPO}/configs/"))

    (line,) = commands(bash_block('docs/training.md', 'tools/export_student.py'))
    proc = subprocess.run(offline(line).replace('python ', f'{sys.executable} ', 1),
                          shell=True, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for containing in ("init_model('configs/", 'show_result_pyplot'):
        scope = {}
        exec(offline(python_block('docs/training.md', containing)), scope)
        assert scope['result'].pred_sem_seg.data.shape == (1, 90, 120)
    mask = cv2.imread(str(tmp_path / 'mask.png'))
    assert mask is not None and mask.shape[:2] == (90, 120)
