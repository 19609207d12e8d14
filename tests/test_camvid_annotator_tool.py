"""tools/train_camvid_annotator.py: trains on Seq05VD only, writes a valid, resumable cache.

The end-to-end tests need the real CamVid in ../shared/data/camvid (skipped with the reason
when it is absent). Tiny: 2 iterations on 4 Seq05VD frames (crop 64, batch 2), 3 exported
train images; at full scale with flip, 1 iteration on 2 frames, 1 exported image. The flip
average, the coverage / ECE arithmetic, the remake command and the scales' pipelines are
checked without data.
"""
import importlib.util
import json
import os
import os.path as osp
import shlex
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

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

    # 3 valid entries: CamVid's classes, the original 480 x 360 size, every class (default)
    assert result['written'] == 3 and result['skipped'] == 0
    stems = sorted(n[:-5] for n in os.listdir(out) if n.endswith('.topk'))
    assert len(stems) == 3 and all(s.split('_', 1)[0] in held for s in stems)
    cache = AnnotatorCache(str(out), num_classes=11, class_names=CLASSES,
                           annotator=tool.ANNOTATOR_NAME, topk=11)
    for stem in stems:
        entry = cache.load(stem, height=360, width=480)
        assert entry.index.shape == (11, 360, 480) and entry.index.max() < 11
        assert (np.sort(entry.index, axis=0) == np.arange(11)[:, None, None]).all()
        total = entry.prob.astype(np.int64).sum(0)
        assert abs(total - 255).max() <= 6 and (entry.prob[0] >= entry.prob[1]).all()
        assert read_entry(cache.path(stem)).meta['codec'] == 'none'  # the default
    manifest = read_manifest(str(out))
    assert manifest['command'].startswith('python tools/train_camvid_annotator.py')
    assert '--topk 11' in manifest['command'] and manifest['topk'] == 11
    assert (manifest['scale'], manifest['flip']) == ('half', False)
    assert manifest['classes'] == CLASSES and manifest['model']['num_train_images'] == 4
    with open(work / tool.EVAL_FILE) as f:
        evaluation = json.load(f)
    assert set(evaluation['per_class_IoU']) == set(CLASSES) and evaluation['num_images'] == 3
    assert 0 <= evaluation['mIoU'] <= 1
    # coverage grows with k, top-1 coverage is the pixel accuracy, ECE in [0, 1],
    # 15 bins holding every labeled pixel, the diagram written
    cover = evaluation['top_k_coverage']
    assert list(cover) == ['1', '2', '3', '5'] and None not in cover.values()
    assert cover['1'] == pytest.approx(evaluation['aAcc'])
    assert cover['1'] <= cover['2'] <= cover['3'] <= cover['5'] <= 1
    assert 0 <= evaluation['ece'] <= 1 and evaluation['ece_bins'] == 15
    bins = evaluation['reliability']
    assert len(bins) == 15 and sum(b['pixels'] for b in bins) == evaluation['labeled_pixels']
    with open(evaluation['reliability_png'], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert evaluation['reliability_png'] == str(work / tool.RELIABILITY_FILE)
    assert manifest['evaluation']['top_k_coverage'] == cover
    assert manifest['evaluation']['ece'] == evaluation['ece']

    # a second run neither trains again nor rewrites valid entries
    before = _mtimes(out)
    again = tool.main(argv)
    assert not again['trained']
    assert (again['written'], again['skipped'], again['total']) == (0, 3, 3)
    assert _mtimes(out) == before


def test_full_scale_with_flip_round_trips_through_the_manifest(tool, tmp_path):
    """--scale full --flip: trained and exported without resizing, recorded in the manifest,
    and the recorded command parses back to the same options; a rerun that changes the scale
    or the flip is refused instead of silently reusing the checkpoint or the entries."""
    root = shared_data('camvid')
    work, out = tmp_path / 'work', tmp_path / 'cache'
    argv = ['--data-root', root, '--work-dir', str(work), '--out', str(out), '--iters', '1',
            '--crop', '64', '--batch-size', '2', '--num-workers', '0', '--scale', 'full',
            '--flip', '--topk', '4', '--lr', '0.02', '--max-train-images', '2',
            '--max-export-images', '1', '--log-interval', '1']
    result = tool.main(argv)
    assert result['trained'] and result['written'] == 1
    manifest = read_manifest(str(out))
    assert (manifest['scale'], manifest['flip'], manifest['topk']) == ('full', True, 4)
    assert manifest['model']['scale'] == 'full' and manifest['model']['lr'] == 0.02
    again = tool.parse_args(shlex.split(manifest['command'])[2:])
    given = tool.parse_args(argv)
    for key in ('scale', 'flip', 'topk', 'iters', 'crop', 'batch_size', 'lr', 'seed',
                'max_train_images', 'max_export_images', 'out', 'work_dir', 'data_root'):
        assert getattr(again, key) == getattr(given, key), key
    with open(work / tool.SETTINGS_FILE) as f:
        assert json.load(f)['scale'] == 'full'
    (stem,) = [n[:-5] for n in os.listdir(out) if n.endswith('.topk')]
    entry = AnnotatorCache(str(out), topk=4).load(stem, height=360, width=480)
    assert entry.index.shape == (4, 360, 480)
    with open(work / tool.EVAL_FILE) as f:
        evaluation = json.load(f)
    assert evaluation['top_k_coverage']['5'] is None  # unknown from a top-4 cache
    assert evaluation['top_k_coverage']['3'] is not None
    assert (evaluation['scale'], evaluation['flip']) == ('full', True)

    with pytest.raises(SystemExit, match=r"other settings \(scale: 'full' then, 'half' now"):
        tool.main(argv[:argv.index('--scale')] + argv[argv.index('--scale') + 2:])
    with pytest.raises(SystemExit, match='made with --flip, this run is without it'):
        tool.main([a for a in argv if a != '--flip'])


def test_pinned_weights_make_the_same_cache_without_training(tool, tmp_path):
    """--weights: the first call trains and pins the final weights with their settings; a
    call on a fresh work dir and cache exports from them (nothing trains) the same entries,
    its manifest naming the file and its sha1; other settings are refused, naming the file."""
    root = shared_data('camvid')
    weights = str(tmp_path / 'pinned' / 'annotator.pth')
    argv = ['--data-root', root, '--iters', '1', '--crop', '64', '--batch-size', '2',
            '--num-workers', '0', '--max-train-images', '2', '--max-export-images', '2',
            '--log-interval', '1', '--weights', weights]
    first = tool.main(argv + ['--work-dir', str(tmp_path / 'w1'), '--out', str(tmp_path / 'c1')])
    assert first['trained'] and first['checkpoint'] == weights and osp.isfile(weights)
    pinned = torch.load(weights, map_location='cpu', weights_only=False)
    assert set(pinned) == {'state_dict', 'meta'}   # no optimizer state
    assert pinned['meta']['train_settings']['iters'] == 1
    second = tool.main(argv + ['--work-dir', str(tmp_path / 'w2'), '--out', str(tmp_path / 'c2')])
    assert not second['trained'] and second['written'] == 2
    assert not osp.exists(tmp_path / 'w2' / 'iter_1.pth')
    manifest = read_manifest(str(tmp_path / 'c2'))
    assert manifest['model']['checkpoint'] == weights
    assert manifest['model']['checkpoint_sha1'] == tool.file_sha1(weights)
    assert read_manifest(str(tmp_path / 'c1'))['model'] == manifest['model']
    for name in sorted(n for n in os.listdir(tmp_path / 'c1') if n.endswith('.topk')):
        a = read_entry(str(tmp_path / 'c1' / name))
        b = read_entry(str(tmp_path / 'c2' / name))
        assert (a.prob == b.prob).all() and (a.index == b.index).all()
    other = argv[:argv.index('--iters')] + ['--iters', '2'] + argv[argv.index('--iters') + 2:]
    with pytest.raises(SystemExit, match=r"annotator.pth was trained with other settings "
                                         r"\(iters: 1 then, 2 now\)"):
        tool.main(other + ['--work-dir', str(tmp_path / 'w3'), '--out', str(tmp_path / 'c3')])


@pytest.mark.parametrize('extra', [
    [],
    ['--weights', 'pinned/annotator.pth'],
    ['--scale', 'full', '--flip', '--topk', '3'],
    ['--scale', 'half', '--iters', '3000', '--crop', '320', '--batch-size', '6', '--lr', '0.01',
     '--seed', '2', '--codec', 'zlib', '--max-train-images', '5', '--max-export-images', '7'],
])
def test_remake_command_round_trip(tool, extra):
    args = tool.parse_args(['--out', 'some dir/cache'] + extra)
    parts = shlex.split(tool.remake_command(args))
    assert parts[:2] == ['python', 'tools/train_camvid_annotator.py']
    again = tool.parse_args(parts[2:])
    assert vars(again) == vars(args)
    assert ('--flip' in parts) == ('--flip' in extra)
    assert parts[parts.index('--scale') + 1] == (extra[extra.index('--scale') + 1]
                                                 if '--scale' in extra else 'half')


def test_full_scale_does_not_resize(tool, tmp_path):
    """The export pipeline at --scale full hands the model the image at its own size; at half
    it resizes (to 240 x 180 for CamVid's 4:3); the training pipeline drops Resize too."""
    import conformalsam_mmseg  # noqa: F401  (registers the transforms)
    img = tmp_path / 'x.jpg'
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8))
    shapes = {}
    for scale in ('half', 'full'):
        args = tool.parse_args(['--scale', scale, '--work-dir', str(tmp_path / scale)])
        cfg = tool.build_config(args, str(tmp_path / 'stems.txt'))
        train_steps = [s['type'] for s in cfg.train_dataloader.dataset.pipeline]
        assert ('Resize' in train_steps) == (scale == 'half')
        assert 'RandomRescale' in train_steps and 'RandomCrop' in train_steps
        packed = tool.export_pipeline(cfg)(dict(img_path=str(img)))
        shapes[scale] = tuple(packed['inputs'].shape)
        assert packed['data_samples'].ori_shape == (48, 64)
    assert shapes == {'half': (3, 180, 240), 'full': (3, 48, 64)}
    with pytest.raises(ValueError, match='scale must be one of'):
        tool.scaled_pipeline([], 'quarter')


class _ToyModel:
    """An image-to-logits map that is not mirror-symmetric (a horizontal ramp)."""

    def test_step(self, batch):
        out = []
        for x in batch['inputs']:
            x = x.float() / 255
            ramp = torch.linspace(0, 3, x.shape[-1])
            logits = torch.stack([x[0] * ramp, x[1] - ramp, 2 * x[2] * x[0]])
            out.append(SimpleNamespace(seg_logits=SimpleNamespace(data=logits)))
        return out


def test_flip_export_is_the_mean_of_the_two_softmaxes(tool):
    gen = torch.Generator().manual_seed(0)
    images = {f'img{i}': torch.randint(0, 256, (3, 5, 7), generator=gen, dtype=torch.uint8)
              for i in range(2)}

    def pipeline(results):
        return dict(inputs=images[results['img_path']])

    model = _ToyModel()
    plain = tool.predict_probs(model, pipeline, list(images))
    flipped = tool.predict_probs(model, pipeline, list(images), flip=True)
    for i, x in enumerate(images.values()):
        p = model.test_step(dict(inputs=[x]))[0].seg_logits.data.softmax(0)
        p_mirror = model.test_step(dict(inputs=[x.flip(-1)]))[0].seg_logits.data.softmax(0)
        expected = (p + p_mirror.flip(-1)) / 2
        assert torch.allclose(plain[i], p, atol=1e-6)
        assert torch.allclose(flipped[i], expected, atol=1e-6)
        assert not torch.allclose(flipped[i], p, atol=1e-3)  # the mirror mattered
        assert torch.allclose(flipped[i].sum(0), torch.ones(5, 7), atol=1e-5)
    assert flipped.shape == (2, 3, 5, 7)


def test_coverage_and_ece_by_hand(tool):
    """6 labeled pixels and one void, K = 6, a top-5 cache; true-class ranks 0, 1, 0, 2, 0, 4
    and top-1 confidences 255, 255, 102, 102, 51, 204 (/255 = 1, 1, .4, .4, .2, .8).

    coverage: k=1 3/6, k=2 4/6, k=3 5/6, k=5 6/6.
    bins of width 1/15, (i/15, (i+1)/15]: 1.0 -> 14, .4 -> 5 (.4 = 6/15 is the upper edge),
    .2 -> 2, .8 -> 11. ECE = 2/6 |.5 - 1| + 2/6 |.5 - .4| + 1/6 |1 - .2| + 1/6 |0 - .8|
    = 1/6 + 1/30 + 2/15 + 2/15 = 14/30.
    """
    truth = np.array([[0, 1, 2, 3, 4, 5, 255]])  # (1, 7)
    ranks = [0, 1, 0, 2, 0, 4, 0]
    conf = [255, 255, 102, 102, 51, 204, 255]
    index = np.zeros((5, 1, 7), np.uint8)
    prob = np.zeros((5, 1, 7), np.uint8)
    for j, (t, r, c) in enumerate(zip(truth[0], ranks, conf)):
        others = [k for k in range(6) if k != (t if t < 6 else 0)]
        order = others[:r] + [t if t < 6 else 0] + others[r:]
        index[:, 0, j] = order[:5]
        prob[0, 0, j] = c
    stats = tool.AnnotatorStats(6)
    stats.update(index[:, :, :4], prob[:, :, :4], truth[:, :4])  # two images, accumulated
    stats.update(index[:, :, 4:], prob[:, :, 4:], truth[:, 4:])
    assert stats.labeled == 6
    assert stats.coverage() == pytest.approx({'1': 3 / 6, '2': 4 / 6, '3': 5 / 6, '5': 1.0})
    assert stats.ece() == pytest.approx(14 / 30)
    rows = stats.reliability()
    assert [i for i, r in enumerate(rows) if r['pixels']] == [2, 5, 11, 14]
    assert rows[5] == dict(lower=pytest.approx(5 / 15), upper=pytest.approx(6 / 15), pixels=2,
                           confidence=pytest.approx(0.4), accuracy=0.5)
    assert tool.confidence_bin(np.array([0, 17, 18, 255])).tolist() == [0, 0, 1, 14]
    result = tool.summarize(stats, [f'c{k}' for k in range(6)], 2)
    assert result['aAcc'] == pytest.approx(0.5) and result['top_k_coverage']['1'] == 0.5

    # a top-3 cache cannot tell the top-5 coverage
    top3 = tool.AnnotatorStats(6)
    top3.update(index[:3], prob[:3], truth)
    assert top3.coverage() == pytest.approx({'1': 3 / 6, '2': 4 / 6, '3': 5 / 6, '5': None})
    assert top3.ece() == pytest.approx(14 / 30)


def test_a_stopped_training_resumes_from_its_last_checkpoint(tool, tmp_path, monkeypatch,
                                                            capsys):
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    class Stop(RuntimeError):
        pass

    @HOOKS.register_module(force=True)
    class StopAfterTwoIters(Hook):
        priority = 'LOWEST'   # after the checkpoint of iteration 2 is written

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 2:
                raise Stop()

    root = shared_data('camvid')
    work, out = tmp_path / 'work', tmp_path / 'cache'
    argv = ['--data-root', root, '--work-dir', str(work), '--out', str(out), '--iters', '3',
            '--crop', '64', '--batch-size', '2', '--num-workers', '0',
            '--max-train-images', '4', '--max-export-images', '1', '--log-interval', '1']
    monkeypatch.setattr(tool, 'RESUME_INTERVAL', 1)
    build = tool.build_config

    def stopping(args, stems_file):
        cfg = build(args, stems_file)
        cfg.custom_hooks = [dict(type='StopAfterTwoIters')]
        return cfg
    monkeypatch.setattr(tool, 'build_config', stopping)
    with pytest.raises(Stop):
        tool.main(argv)
    assert (work / 'iter_2.pth').is_file() and not (work / 'iter_3.pth').exists()
    monkeypatch.setattr(tool, 'build_config', build)
    capsys.readouterr()
    result = tool.main(argv)
    assert 'resuming the stopped training' in capsys.readouterr().out
    assert result['trained'] and osp.isfile(work / 'iter_3.pth')
    assert torch.load(work / 'iter_3.pth', weights_only=False)['meta']['iter'] == 3
    # other settings never resume a stopped run
    (work / 'iter_3.pth').unlink()
    tool.main(argv + ['--lr', '0.002', '--overwrite'])
    assert 'resuming' not in capsys.readouterr().out
