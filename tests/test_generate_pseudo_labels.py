"""tools/generate_pseudo_labels.py: end to end on generated data, resumable, sharded by torchrun."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch

from conformalsam_mmseg.annotators import AnnotatorCache, SimulatedAnnotator, read_entry
from conformalsam_mmseg.annotators.cache import encode_entry, read_manifest, write_entry
from conformalsam_mmseg.datasets.synthetic_shapes import SHAPES_CLASSES
from conftest import REPO

TOOL = osp.join(REPO, 'tools', 'generate_pseudo_labels.py')
CONFIG = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('generate_pseudo_labels', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(data_root, out, *extra, split='train'):
    return [CONFIG, '--annotator', 'simulated', '--annotator-cfg', 'gap=0.3', 'seed=5',
            '--split', split, '--out', str(out), '--topk', '2', '--cfg-options',
            f'train_dataloader.dataset.data_root={data_root}', *extra]


def _mtimes(folder):
    return {n: os.stat(osp.join(folder, n)).st_mtime_ns for n in os.listdir(folder)
            if n.endswith('.topk')}


def test_end_to_end_resume_and_repair(tool, shapes_root, tmp_path):
    out = tmp_path / 'cache'
    stats = tool.main(_argv(shapes_root, out))
    assert stats == dict(written=24, skipped=0, total=24)
    names = sorted(n for n in os.listdir(out) if n.endswith('.topk'))
    assert len(names) == 24 and names[0] == 'train_0000.topk'
    assert not [n for n in os.listdir(out) if n.endswith('.tmp')]

    # the entry is exactly the annotator's output on that image, cached
    img_path = osp.join(shapes_root, 'images', 'train', 'train_0007.png')
    gt = mmcv.imread(osp.join(shapes_root, 'labels', 'train', 'train_0007.png'), 'unchanged')
    direct = SimulatedAnnotator(gap=0.3, seed=5).annotate(
        mmcv.imread(img_path), SHAPES_CLASSES, img_path=img_path, gt_seg_map=gt)
    expected = encode_entry(direct, stem='train_0007', class_names=SHAPES_CLASSES,
                            annotator='SimulatedAnnotator', topk=2)
    assert (out / 'train_0007.topk').read_bytes() == expected
    entry = read_entry(str(out / 'train_0007.topk'))
    assert (entry.index[0] == gt).mean() > 0.8  # a gap of 0.3: mostly right

    manifest = read_manifest(str(out))
    assert manifest['classes'] == list(SHAPES_CLASSES) and manifest['num_images'] == 24
    assert manifest['command'].startswith(
        f'python tools/generate_pseudo_labels.py {CONFIG} --annotator simulated '
        '--annotator-cfg gap=0.3 seed=5 --split train')

    # resumable: a second run writes nothing
    before = _mtimes(out)
    assert tool.main(_argv(shapes_root, out)) == dict(written=0, skipped=24, total=24)
    assert _mtimes(out) == before

    # a missing and a stale entry (other classes) are remade, nothing else is touched
    os.remove(out / 'train_0003.topk')
    write_entry(str(out), torch.full((2, 64, 80), 0.5), stem='train_0011',
                class_names=['a', 'b'], annotator='SimulatedAnnotator', topk=2)
    assert tool.main(_argv(shapes_root, out)) == dict(written=2, skipped=22, total=24)
    after = _mtimes(out)
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed == {'train_0003.topk', 'train_0011.topk'}
    assert AnnotatorCache(str(out), class_names=SHAPES_CLASSES).is_valid(
        'train_0011', height=64, width=80)


def test_loading_the_generated_cache_in_a_pipeline(tool, shapes_root, tmp_path):
    from mmseg.registry import TRANSFORMS

    from conformalsam_mmseg.annotators import CacheEntryError
    from conformalsam_mmseg.datasets.transforms import annotator_output  # noqa: F401
    out = tmp_path / 'cache'
    tool.main(_argv(shapes_root, out))
    pipeline = [TRANSFORMS.build(t) for t in [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotatorOutput', cache_dir=str(out), num_classes=4,
             classes=SHAPES_CLASSES),
        dict(type='PackAnnotatorOutput')]]
    results = dict(img_path=osp.join(shapes_root, 'images', 'train', 'train_0002.png'))
    for t in pipeline:
        results = t(results)
    assert results['data_samples'].annotator_topk_index.data.shape == (2, 64, 80)
    os.remove(out / 'train_0002.topk')
    results = dict(img_path=osp.join(shapes_root, 'images', 'train', 'train_0002.png'))
    with pytest.raises(CacheEntryError) as info:
        for t in pipeline:
            results = t(results)
    assert 'train_0002' in str(info.value)
    assert read_manifest(str(out))['command'] in str(info.value)


def test_labeled_unlabeled_and_ann_file_splits(tool, shapes_root, tmp_path):
    stems = [f'train_{i:04d}' for i in range(24)]
    splits = tmp_path / 'splits'
    splits.mkdir()
    (splits / 'labeled.txt').write_text('\n'.join(stems[:4]) + '\n')
    (splits / 'unlabeled.txt').write_text('\n'.join(stems[4:]) + '\n')
    (splits / 'few.txt').write_text('train_0005\ntrain_0009\n')
    ann = f'train_dataloader.dataset.ann_file={splits / "labeled.txt"}'
    out = tmp_path / 'u'
    assert tool.main(_argv(shapes_root, out, ann, split='unlabeled'))['written'] == 20
    assert sorted(os.listdir(out))[0] == 'cache_info.json'
    assert 'train_0000.topk' not in os.listdir(out) and 'train_0004.topk' in os.listdir(out)
    assert tool.main(_argv(shapes_root, tmp_path / 'l', ann, split='labeled'))['written'] == 4
    few = tool.main(_argv(shapes_root, tmp_path / 'f', ann, '--ann-file',
                          str(splits / 'few.txt'), split='labeled'))
    assert few['written'] == 2
    with pytest.raises(SystemExit, match='no_such_dataset'):
        tool.main(_argv(shapes_root, tmp_path / 'x', split='no_such'))


def test_simulated_needs_label_files(tool, shapes_root, tmp_path):
    argv = _argv(shapes_root, tmp_path / 'c',
                 'train_dataloader.dataset.data_prefix.seg_map_path=no_labels')
    with pytest.raises(SystemExit, match='needs ground truth'):
        tool.main(argv)


def test_topk_defaults_to_every_class_up_to_32(tool, shapes_root, tmp_path):
    """Without --topk the cache keeps all K classes (here 4), and the recorded command says
    so; above 32 classes there is no default and the message names the option."""
    from conformalsam_mmseg.annotators.cache import default_topk
    out, few = tmp_path / 'full', tmp_path / 'few.txt'
    few.write_text('train_0000\ntrain_0001\n')
    argv = _argv(shapes_root, out, '--ann-file', str(few))
    i = argv.index('--topk')
    del argv[i:i + 2]
    assert tool.main(argv) == dict(written=2, skipped=0, total=2)
    k = len(SHAPES_CLASSES)
    assert read_entry(str(out / 'train_0000.topk')).topk == k == 4
    manifest = read_manifest(str(out))
    assert manifest['topk'] == k and f'--topk {k}' in manifest['command']
    assert default_topk(11) == 11 and default_topk(32) == 32 and default_topk(150, 5) == 5
    with pytest.raises(ValueError, match=r'150 classes: choose .* with --topk K'):
        default_topk(150)
    with pytest.raises(ValueError, match=r'--topk must be in 1\.\.11'):
        default_topk(11, 12)
    with pytest.raises(SystemExit, match=r'--topk must be in 1\.\.4'):
        tool.main(argv + ['--topk', '5'])


def test_torchrun_two_processes_shard_the_images(tool, shapes_root, tmp_path):
    single, sharded = tmp_path / 'single', tmp_path / 'sharded'
    tool.main(_argv(shapes_root, single))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', TOOL] + _argv(shapes_root, sharded)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '[rank 0/2] 12 written, 0 already valid, 12 images' in proc.stdout
    assert '[rank 1/2] 12 written, 0 already valid, 12 images' in proc.stdout
    # every image once, and the same bytes as one process writes: sharding changes nothing
    names = sorted(n for n in os.listdir(sharded) if n.endswith('.topk'))
    assert names == sorted(n for n in os.listdir(single) if n.endswith('.topk'))
    for n in names:
        assert (sharded / n).read_bytes() == (single / n).read_bytes()
    assert not [n for n in os.listdir(sharded) if n.endswith('.tmp')]
    assert np.all([read_entry(str(sharded / n)).meta['topk'] == 2 for n in names])


def test_reencoding_a_cache_for_training(tool, shapes_root, tmp_path):
    """A compact zlib cache (made elsewhere) becomes a fast 'none' one through the
    precomputed annotator: same probabilities, the source annotator's name kept."""
    from conformalsam_mmseg.annotators import topk_to_dense
    zlib_dir, none_dir = tmp_path / 'zlib', tmp_path / 'none'
    tool.main(_argv(shapes_root, zlib_dir, '--codec', 'zlib'))
    argv = [CONFIG, '--annotator', 'precomputed', '--annotator-cfg', f'cache_dir={zlib_dir}',
            'annotator=SimulatedAnnotator', '--split', 'train', '--out', str(none_dir),
            '--topk', '2', '--codec', 'none', '--cfg-options',
            f'train_dataloader.dataset.data_root={shapes_root}']
    assert tool.main(argv) == dict(written=24, skipped=0, total=24)
    for name in ('train_0000.topk', 'train_0017.topk'):
        a, b = read_entry(str(zlib_dir / name)), read_entry(str(none_dir / name))
        assert (a.meta['layout'], b.meta['layout']) == ('planes', 'pixels')
        assert b.meta['annotator'] == 'SimulatedAnnotator'
        assert np.array_equal(b.prob, a.prob)
        assert torch.equal(topk_to_dense(b.index, b.prob, len(SHAPES_CLASSES)),
                           topk_to_dense(a.index, a.prob, len(SHAPES_CLASSES)))
