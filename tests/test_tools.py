"""tools/train.py and tools/test.py from the command line, as a user runs them."""
import os.path as osp
import subprocess

from conftest import REPO
from helpers import shapes_config


def _run(python, *args):
    return subprocess.run([python, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_train_then_test_a_checkpoint(shapes_root, tmp_path, python):
    cfg_path = str(tmp_path / 'cfg.py')
    shapes_config(shapes_root, tmp_path / 'unused', max_iters=2).dump(cfg_path)
    work = str(tmp_path / 'work')
    train = _run(python, 'tools/train.py', cfg_path, '--work-dir', work)
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = osp.join(work, 'iter_2.pth')
    assert osp.isfile(ckpt)

    test = _run(python, 'tools/test.py', cfg_path, ckpt, '--work-dir', work,
                '--out', str(tmp_path / 'preds'))
    assert test.returncode == 0, test.stderr[-3000:]
    assert 'mIoU' in test.stdout + test.stderr
    assert len(list((tmp_path / 'preds').glob('*.png'))) == 8  # one per val image


def test_test_names_a_missing_checkpoint(shapes_root, tmp_path, python):
    cfg_path = str(tmp_path / 'cfg.py')
    shapes_config(shapes_root, tmp_path, max_iters=2).dump(cfg_path)
    missing = str(tmp_path / 'nope.pth')
    test = _run(python, 'tools/test.py', cfg_path, missing)
    assert test.returncode != 0
    assert missing in test.stderr and 'tools/train.py' in test.stderr
