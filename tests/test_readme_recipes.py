"""README.md's recipes run as written on a tiny VOC made here.

Offline substitutions: SEEM is the stand-in in tests/fake_seem (same interfaces, same command
line); ``dist_train.sh`` runs 2 CPU ranks instead of 4 GPUs, for 2 iterations at crop 64 without
downloading the ImageNet weights (the overrides docs/training.md gives for these cases)."""
import os
import os.path as osp
import shlex
import shutil
import socket
import subprocess
import sys


from conformalsam_mmseg.annotators import AnnotatorCache
from conformalsam_mmseg.annotators.cache import read_manifest
from conftest import REPO
from doc_recipes import SMALL_LOADERS, bash_block
from voc_layout import make_voc_workspace

CONFIG = 'configs/allspark_conformalsam_voc.py'
TINY = ['model.host.segmentor.backbone.init_cfg=None',
        'model.host.data_preprocessor.data_preprocessor.size=(64,64)',
        'model.host.segmentor.data_preprocessor.size=(64,64)',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2'] + [
    f'train_dataloader.dataset.{part}.pipeline.{i}.{key}=(64,64)'
    for part in ('labeled', 'unlabeled') for i, key in ((3, 'crop_size'), (4, 'size'))
] + SMALL_LOADERS


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _fake_seem(root):
    seem = osp.join(root, 'SEEM')
    shutil.copytree(osp.join(REPO, 'tests', 'fake_seem'), seem)
    os.makedirs(osp.join(seem, 'configs', 'seem'))
    with open(osp.join(seem, 'configs', 'seem', 'focall_unicl_lang_v1.yaml'), 'w') as f:
        f.write('MODEL: {}\n')
    with open(osp.join(seem, 'seem_focall_v1.pt'), 'wb') as f:
        f.write(b'weights')
    return seem


def test_allspark_conformalsam_voc_recipe(tmp_path):
    block = bash_block('README.md', f'generate_pseudo_labels.py {CONFIG}')
    with open(osp.join(REPO, CONFIG)) as f:  # the config the README shows is the shipped one
        shipped = f.read()
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    shown = readme.split(f'```python\n# {CONFIG}\n', 1)[1].split('```', 1)[0]
    assert "_base_ = ['./allspark/allspark_mit-b5_voc-classic-366.py', " \
           "'./_base_/conformalsam_voc.py']" in shown
    assert "type='ConformalSAM'" in shown and shipped.endswith(shown)
    labeled, unlabeled = make_voc_workspace(tmp_path, num_labeled=4, num_unlabeled=4)
    seem = _fake_seem(str(tmp_path))
    assert block.startswith('SEEM=/path/to/SEEM ')
    train_line = f'bash tools/dist_train.sh {CONFIG} 4\n'
    assert block.endswith(train_line)
    script = (block.replace('SEEM=/path/to/SEEM', f'SEEM={seem}', 1)
              .replace(train_line, f'bash tools/dist_train.sh {CONFIG} 2 --cfg-options '
                       + shlex.join(TINY) + '\n'))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    proc = subprocess.run(['bash', '-e', '-c', script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]

    cache = str(tmp_path / 'data' / 'annotator_cache' / 'seem_voc')
    stems = sorted(n[:-5] for n in os.listdir(cache) if n.endswith('.topk'))
    assert stems == sorted(labeled + unlabeled)
    manifest = read_manifest(cache)
    assert manifest['annotator'] == 'SEEMAnnotator'
    assert sorted(manifest['splits']) == ['labeled', 'unlabeled']
    assert AnnotatorCache(cache, num_classes=21).load(labeled[0]).topk == 21  # default: all
    assert 'ConformalSAM calibration' in out
    assert osp.isfile(tmp_path / 'work_dirs' / 'allspark_conformalsam_voc' / 'iter_2.pth')
