"""tools/train_camvid_annotator.py: trains on Seq05VD only, writes a valid, resumable cache.

Needs the real CamVid in ../shared/data/camvid (skipped with the reason when it is absent).
Tiny: 2 iterations on 4 Seq05VD frames (crop 64, batch 2), 3 exported train images.
"""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest

from conformalsam_mmseg.annotators import AnnotatorCache, read_entry
from conformalsam_mmseg.annotators.cache import read_manifest
from conformalsam_mmseg.datasets import CamVidDataset
from conftest import REPO, shared_data

TOOL = osp.join(REPO, 'tools', 'train_camvid_annotator.py')
CLASSES = list(CamVidDataset.METAINFO['classes'])


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('train_camvid_annotator', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sequences(root, split):
    return {n.split('_', 1)[0] for n in os.listdir(osp.join(root, 'images', split))}


def _mtimes(folder):
    return {n: os.stat(osp.join(folder, n)).st_mtime_ns for n in os.listdir(folder)
            if n.endswith('.topk')}


def test_trains_on_seq05vd_only_and_caches_camvid_train(tool, tmp_path):
    root = shared_data('camvid')
    work, out = tmp_path / 'work', tmp_path / 'cache'
    argv = ['--data-root', root, '--work-dir', str(work), '--out', str(out), '--iters', '2',
            '--crop', '64', '--batch-size', '2', '--num-workers', '0',
            '--max-train-images', '4', '--max-export-images', '3', '--log-interval', '1']
    result = tool.main(argv)

    # trained, on 4 Seq05VD frames and nothing else: no frame of a train/val sequence
    assert result['trained'] and osp.isfile(result['checkpoint'])
    used = result['train_stems']
    assert len(used) == 4 and all(s.startswith('Seq05VD_') for s in used)
    held = _sequences(root, 'train') | _sequences(root, 'val')
    assert held >= {'0001TP', '0006R0', '0016E5'}
    assert not {s.split('_', 1)[0] for s in used} & held
    with open(work / tool.STEMS_FILE) as f:
        assert f.read().split() == used  # the ann_file the Runner's dataset was built from
    with pytest.raises(AssertionError, match='train/val sequences'):
        tool.check_cross_sequence(used + ['0001TP_008550'], root)  # 0001TP is in test too

    # 3 valid entries: CamVid's classes, the original 480 x 360 size, top-3
    assert result['written'] == 3 and result['skipped'] == 0
    stems = sorted(n[:-5] for n in os.listdir(out) if n.endswith('.topk'))
    assert len(stems) == 3 and all(s.split('_', 1)[0] in held for s in stems)
    cache = AnnotatorCache(str(out), num_classes=11, class_names=CLASSES,
                           annotator=tool.ANNOTATOR_NAME, topk=3)
    for stem in stems:
        entry = cache.load(stem, height=360, width=480)
        assert entry.index.shape == (3, 360, 480) and entry.index.max() < 11
        total = entry.prob.astype(np.int64).sum(0)
        assert total.max() <= 255 + 2 and (entry.prob[0] >= entry.prob[1]).all()
        assert read_entry(cache.path(stem)).meta['codec'] == 'none'  # the default
    manifest = read_manifest(str(out))
    assert manifest['command'].startswith('python tools/train_camvid_annotator.py')
    assert manifest['classes'] == CLASSES and manifest['model']['num_train_images'] == 4
    with open(work / tool.EVAL_FILE) as f:
        evaluation = json.load(f)
    assert set(evaluation['per_class_IoU']) == set(CLASSES) and evaluation['num_images'] == 3
    assert 0 <= evaluation['mIoU'] <= 1

    # a second run neither trains again nor rewrites valid entries
    before = _mtimes(out)
    again = tool.main(argv)
    assert not again['trained']
    assert (again['written'], again['skipped'], again['total']) == (0, 3, 3)
    assert _mtimes(out) == before
