"""The training recipes of README.md ("Training") and docs/training.md, run as written on a
tiny VOC made here, with the offline overrides docs/training.md gives (no ImageNet weights:
model.pretrained=None; after the first run a 64 crop, set as "Changing the crop" says) and 2
CPU processes where the docs say 4 or 8 GPUs. README's dist_train.sh line and docs/training.md's
CPU one are run by tests/test_dist_train.py; the AllSpark/ConformalSAM line of "Pretrained
weights offline" by tests/test_readme_recipes.py (its override, on the README's recipe);
slurm_train.sh needs a Slurm cluster and is not run here."""
import os
import os.path as osp
import re
import shlex
import socket
import subprocess
import sys

from doc_recipes import SMALL_LOADERS, bash_block, commands
from voc_layout import make_voc_workspace

CONFIG = 'configs/supervised/deeplabv3plus_r101_voc-classic-366.py'
WORK_DIR = 'work_dirs/deeplabv3plus_r101_voc-classic-366'
OFFLINE = ['model.pretrained=None', 'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
           'model.data_preprocessor.size=(64,64)', 'train_cfg.val_interval=100',
           'default_hooks.checkpoint.interval=2'] + SMALL_LOADERS


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(line, cwd, *extra):
    line = re.sub(r'^python ', shlex.quote(sys.executable) + ' ', line)
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', '-c', line + ''.join(' ' + shlex.quote(e) for e in extra)],
                          cwd=str(cwd), env=env, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{line}\n{out[-4000:]}'
    return out


def test_readme_training_and_docs_training_commands(tmp_path):
    make_voc_workspace(tmp_path, num_labeled=4)
    readme = commands(bash_block('README.md', 'tools/train.py CONFIG --resume'))
    train, _dist_train, resume, test, print_config, slurm = readme
    assert train == f'python tools/train.py {CONFIG}'
    assert slurm.startswith('GPUS=8 bash tools/slurm_train.sh')
    docs = commands(bash_block('docs/training.md', 'bash tools/dist_test.sh'))
    offline = commands(bash_block('docs/training.md', 'model.pretrained=None\npython'))
    (crop,) = commands(bash_block('docs/training.md', 'crop_size=(161,161)'))

    # README's first line with docs/training.md's offline override is its "Pretrained weights
    # offline" line; "Changing the crop" extends the same command: run that, offline
    assert offline[0] == f'{train} --cfg-options model.pretrained=None'
    assert crop.startswith(f'{train} --cfg-options ')
    _run(crop, tmp_path, 'model.pretrained=None', 'train_cfg.max_iters=2', *OFFLINE[3:])
    from mmengine.config import Config
    used = Config.fromfile(str(tmp_path / WORK_DIR / osp.basename(CONFIG)))
    assert tuple(used.train_dataloader.dataset.pipeline[3].crop_size) == (161, 161)
    assert tuple(used.model.data_preprocessor.size) == (161, 161)
    assert used.model.pretrained is None
    assert osp.isfile(tmp_path / WORK_DIR / 'iter_2.pth')

    assert resume == 'python tools/train.py CONFIG --resume'
    out = _run(resume.replace('CONFIG', CONFIG), tmp_path, '--cfg-options',
               'train_cfg.max_iters=4', *OFFLINE)
    assert 'resumed epoch: 0, iter: 2' in out
    assert osp.isfile(tmp_path / WORK_DIR / 'iter_4.pth')

    # README's test line, with the flags docs/training.md lists
    assert test == 'python tools/test.py CONFIG work_dirs/.../iter_N.pth'
    assert 'python tools/test.py CONFIG CHECKPOINT [--out PRED_DIR] [--show-dir VIS_DIR] ' \
           '[--tta]' in docs
    checkpoint = f'{WORK_DIR}/iter_4.pth'
    out = _run(test.replace('CONFIG', CONFIG).replace('work_dirs/.../iter_N.pth', checkpoint),
               tmp_path, '--out', 'preds', '--show-dir', 'vis', '--cfg-options', *OFFLINE)
    assert 'mIoU' in out
    assert len(os.listdir(tmp_path / 'preds')) == 2  # val.txt: 2 images

    assert print_config == 'python tools/print_config.py CONFIG'
    out = _run(print_config.replace('CONFIG', CONFIG), tmp_path)
    assert 'model = dict(' in out and '# What trains:' in out

    assert 'bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES' in docs
    out = _run(f'bash tools/dist_test.sh {CONFIG} {checkpoint} 2', tmp_path,
               '--cfg-options', *OFFLINE)
    assert 'mIoU' in out
