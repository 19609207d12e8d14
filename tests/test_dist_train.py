"""tools/dist_train.sh with 2 CPU processes (gloo) trains and checkpoints."""
import os
import os.path as osp
import shlex
import socket
import subprocess

from conftest import REPO
from helpers import shapes_config


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_ranks(shapes_root, tmp_path, python):
    cfg = shapes_config(shapes_root, tmp_path / 'work', max_iters=2)
    cfg.train_dataloader.sampler.type = 'InfiniteSampler'
    cfg.custom_imports = dict(
        imports=['conformalsam_mmseg', 'rank_done_hook'], allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='RankDoneHook')]
    cfg_path = str(tmp_path / 'dist_cfg.py')
    cfg.dump(cfg_path)
    env = dict(os.environ, PYTHON=python, PORT=str(_free_port()),
               PYTHONPATH=osp.join(REPO, 'tests'), OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg_path, '2'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        done = tmp_path / 'work' / f'rank{rank}.done'
        assert done.read_text() == 'world_size=2 iters=2'
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')


def test_close_distributed_destroys_the_group(tmp_path):
    import torch.distributed as dist

    from conformalsam_mmseg.utils import close_distributed
    close_distributed()  # no group: nothing to do
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    try:
        assert dist.is_initialized()
        close_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_dist_train_a_voc_config_with_sync_bn_on_two_cpu_ranks(tmp_path, python):
    """The VOC configs use SyncBN, which needs CUDA: on CPU ranks it becomes BN, logged."""
    from doc_recipes import bash_block, commands
    from voc_layout import make_voc_workspace
    make_voc_workspace(tmp_path, num_labeled=4)
    small = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
             'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
             'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    env = dict(os.environ, PYTHON=python, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    # docs/training.md's command, as written, plus a small crop and 2 iterations
    (line,) = commands(bash_block('docs/training.md', 'bash tools/dist_train.sh configs/'))
    assert line == ('bash tools/dist_train.sh configs/supervised/'
                    'deeplabv3plus_r101_voc-classic-366.py 2 --cfg-options model.pretrained=None')
    proc = subprocess.run(
        shlex.split(line) + [
         'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
         'model.data_preprocessor.size=(64,64)', 'train_cfg.max_iters=2',
         'train_cfg.val_interval=2', *small, '--work-dir', str(tmp_path / 'work')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'SyncBatchNorm layers only work with GPU modules' not in out
    assert ('CPU distributed run: 115 SyncBN layers (e.g. backbone.stem.1) reverted to BN'
            in out)  # logged by rank 0 (mmengine's logger shows other ranks' errors only)
    assert osp.isfile(tmp_path / 'work' / 'iter_2.pth')
