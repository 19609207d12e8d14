"""AllSpark through mmengine's Runner: train 2N iterations, crash after N, resume to 2N. The
weights, the semantic memory (queue, pointer, fill) and the warm-up counter equal those of an
uninterrupted run, with the memory switched on before the crash."""
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import test_resume  # noqa: F401  (registers CrashAfterIterHook)
from conftest import REPO
from helpers import shapes_config
from test_allspark import tiny_allspark_cfg
from test_resume import Crash

N = 3
DEMO_SEMI = osp.join(REPO, 'configs', 'demo', 'conformalsam_shapes.py')


@pytest.fixture
def semi_shapes_root(shapes_root, tmp_path):
    """The shapes data with 6 labeled and 18 unlabeled training images."""
    from conformalsam_mmseg.datasets.splits import write_ann_files
    root = str(tmp_path / 'shapes')
    shutil.copytree(shapes_root, root)
    stems = sorted(f[:-4] for f in os.listdir(osp.join(root, 'images', 'train')))
    write_ann_files(osp.join(root, 'splits'), stems[:6], stems[6:], overwrite=True)
    return root


def allspark_shapes_config(shapes_root, work_dir, **overrides):
    """The demo's semi-supervised shapes data (4 labeled + 4 unlabeled per batch) with a tiny
    AllSpark; no dropout or drop-path, so that the run is a function of the seed alone."""
    semi = Config.fromfile(DEMO_SEMI)
    cfg = shapes_config(shapes_root, work_dir, max_iters=2 * N)
    for key in ('labeled', 'unlabeled'):
        semi.train_dataloader.dataset[key].data_root = str(shapes_root)
    cfg.train_dataloader = semi.train_dataloader
    cfg.train_dataloader.dataset.annotator_cache = None   # AllSpark alone: no annotator
    model = tiny_allspark_cfg(memory_warmup_iters=2)
    model.data_preprocessor.data_preprocessor.size = (96, 96)
    net = model.segmentor
    net.backbone.drop_path_rate = 0.0
    net.neck.attn_drop = 0.0
    net.decode_head.update(num_classes=4, dropout_ratio=0.0)
    cfg.model = model
    cfg.default_hooks.checkpoint.interval = N
    cfg.train_cfg.val_interval = 10 * N
    cfg.randomness = dict(seed=7)
    cfg.merge_from_dict(overrides)
    return cfg


def test_resume_restores_memory_pointer_and_counter(semi_shapes_root, tmp_path):
    shapes_root = semi_shapes_root
    Runner.from_cfg(allspark_shapes_config(shapes_root, tmp_path / 'straight')).train()

    crashed = allspark_shapes_config(shapes_root, tmp_path / 'resumed',
                                     custom_hooks=[dict(type='CrashAfterIterHook', at=N)])
    with pytest.raises(Crash):
        Runner.from_cfg(crashed).train()
    at_crash = torch.load(tmp_path / 'resumed' / f'iter_{N}.pth', map_location='cpu')
    assert int(at_crash['state_dict']['iteration']) == N  # the memory is on from iteration 2

    resumed = allspark_shapes_config(shapes_root, tmp_path / 'resumed')
    resumed.resume = True
    Runner.from_cfg(resumed).train()

    def state(d):
        return torch.load(d / f'iter_{2 * N}.pth', map_location='cpu')['state_dict']

    straight, again = state(tmp_path / 'straight'), state(tmp_path / 'resumed')
    assert straight.keys() == again.keys()
    memory = 'student.neck.allspark.semantic_memory.'
    assert {memory + k for k in ('queue', 'ptr', 'count')} <= straight.keys()
    assert int(straight['iteration']) == 2 * N
    assert not torch.equal(at_crash['state_dict'][memory + 'queue'], straight[memory + 'queue'])
    for name in straight:
        torch.testing.assert_close(again[name], straight[name], rtol=0, atol=0, msg=name)
