"""The CamVid semi-supervised benchmark: one command, every row, the report.

  .venv/bin/python benchmarks/camvid/run.py [--seeds 0] [--splits 1-16 1-8 1-4] [--iters 200]
      [--rows supervised raw ...] [--work-dir work_dirs/camvid_benchmark] [--out docs/results]

What it does, each step skipped when its output exists (so an interrupted run resumes):

1. data: CamVid at data/camvid (linked to ../shared/data/camvid when that exists, else made by
   tools/prepare_camvid.py),
   the seeded labeled splits 1/16, 1/8, 1/4 of train (tools/make_splits.py, split seed 0; the
   unlabeled images are the rest of train), the cross-sequence annotator's cache
   (tools/train_camvid_annotator.py: trained on Seq05VD only, its outputs on CamVid train);
2. pseudo-label quality on the unlabeled images of the 1/8 split against their ground truth
   (quality.py), for the cross-sequence annotator and for the SimulatedAnnotator at three gaps;
3. the training rows (training.py) for every split and seed, evaluated on val (101 images of
   0016E5) at the configs' half resolution;
4. the report: docs/results/camvid.md and its PNGs (report.py).

``--risk-only`` runs steps 1 and 2 for the risk-controlled filter alone (no training): the
cross-sequence annotator's labels of the 1/8 split's unlabeled images, calibrated on its
labeled images at targets 0.02 / 0.05 / 0.1 for both risks and both modes, beside the paper's
filter and fixed thresholds, into docs/results/camvid_risk.md.

Protocol (fixed; the same for every row): DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0,
160 px crops of the half-resolution images, 4 labeled images per iteration (and 4 unlabeled,
8 for UniMatch's CutMix source), SGD lr 0.01 (head x10) with poly decay, ``--iters``
iterations, seed per ``--seeds``; ConformalSAM with alpha 0.05, pixel mode, self-reliance from
75% of the iterations (configs/_base_/conformalsam*.py).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

import training  # noqa: E402
from training import REPO, ROW_NAMES, ROWS  # noqa: E402

SPLITS = ('1-16', '1-8', '1-4')
QUALITY_SPLIT = '1-8'
SIMULATED_GAPS = (0.25, 0.5, 0.75)
ALPHAS = (0.05, 0.1, 0.2)
TAUS = (0.5, 0.9)
CURVE_ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)
RISK_TARGETS = (0.02, 0.05, 0.1)
DATA = osp.join(REPO, 'data')
CAMVID = osp.join(DATA, 'camvid')
CACHE = osp.join(DATA, 'annotator_cache', 'camvid_cross_sequence')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--splits', nargs='+', default=list(SPLITS), choices=SPLITS)
    p.add_argument('--rows', nargs='+', default=list(ROW_NAMES), choices=ROW_NAMES)
    p.add_argument('--iters', type=int, default=200, help='training iterations of every row')
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'camvid_benchmark'))
    p.add_argument('--out', default=osp.join(REPO, 'docs', 'results'),
                   help='where camvid.md and its PNGs go')
    p.add_argument('--skip-quality', action='store_true')
    p.add_argument('--skip-training', action='store_true')
    p.add_argument('--risk-only', action='store_true',
                   help='only the risk-controlled filter quality (no training): '
                        'docs/results/camvid_risk.md')
    return p.parse_args(argv)


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


SHARED_CAMVID = osp.join(osp.dirname(REPO), 'shared', 'data', 'camvid')


def check_camvid():
    if not osp.lexists(CAMVID) and osp.isdir(SHARED_CAMVID):
        os.makedirs(DATA, exist_ok=True)
        os.symlink(osp.relpath(SHARED_CAMVID, DATA), CAMVID)
        log(f'linked {CAMVID} -> {SHARED_CAMVID}')
    for sub in ('images/train', 'labels/train', 'images/val', 'labels/val'):
        if not osp.isdir(osp.join(CAMVID, sub)):
            raise FileNotFoundError(
                f'CamVid is missing: no folder {osp.join(CAMVID, sub)}. Link the prepared copy '
                f'(ln -s ../../shared/data/camvid {CAMVID}) or convert the original release '
                'with tools/prepare_camvid.py (docs/datasets.md).')


def make_splits():
    missing = [s for s in SPLITS
               if not osp.exists(osp.join(DATA, 'splits', 'camvid', s, 'unlabeled.txt'))]
    if missing:
        _call([osp.join(REPO, 'tools', 'make_splits.py'), 'random', '--img-dir',
               osp.join(CAMVID, 'images', 'train'), '--suffix', '.jpg', '--fraction', '1/16',
               '1/8', '1/4', '--seed', '0', '--out-dir', osp.join(DATA, 'splits', 'camvid')])


SELECTION_SEQUENCE = '0001TP'


def make_selection():
    """The selection set: the 0001TP frames of CamVid test (62). Every choice of the benchmark
    (length, thresholds, alphas) reads it; val (0016E5) gives the final numbers and no choice."""
    path = osp.join(DATA, training.SELECTION_FILE)
    if osp.exists(path):
        return path
    stems = sorted(osp.splitext(f)[0] for f in os.listdir(osp.join(CAMVID, 'images', 'test'))
                   if f.startswith(SELECTION_SEQUENCE) and f.endswith('.jpg'))
    if not stems:
        raise FileNotFoundError(f'no {SELECTION_SEQUENCE}*.jpg in {CAMVID}/images/test: the '
                                'selection set is the 0001TP frames of CamVid test')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write('\n'.join(stems) + '\n')
    os.replace(path + '.tmp', path)
    log(f'selection set: {len(stems)} {SELECTION_SEQUENCE} frames of test -> {path}')
    return path


def split_stems(split):
    d = osp.join(DATA, 'splits', 'camvid', split)
    return tuple(open(osp.join(d, f'{w}.txt')).read().split() for w in ('labeled', 'unlabeled'))


def make_annotator():
    """The cross-sequence annotator's cache; returns the seconds it took (0 if it existed)."""
    if osp.exists(osp.join(CACHE, 'cache_info.json')):
        return 0.0
    log('training the cross-sequence annotator (Seq05VD only) and caching its outputs')
    start = time.perf_counter()
    _call([osp.join(REPO, 'tools', 'train_camvid_annotator.py'), '--out', CACHE])
    return time.perf_counter() - start


def _call(cmd):
    proc = subprocess.run([sys.executable] + cmd, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f'failed ({proc.returncode}): {" ".join(cmd)}')


def _progress(iterable, desc):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, unit='img', dynamic_ncols=True, leave=False)


def run_quality(work_root):
    """Pseudo-label quality of every annotator on the 1/8 split; cached as JSON."""
    import torch

    import quality
    from conformalsam_mmseg.annotators import SimulatedAnnotator
    from conformalsam_mmseg.annotators.cache import AnnotatorCache
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    torch.set_num_threads(os.cpu_count() or 1)
    classes = CamVidDataset.METAINFO['classes']
    images, labels = (osp.join(CAMVID, d, 'train') for d in ('images', 'labels'))
    labeled, unlabeled = split_stems(QUALITY_SPLIT)
    sources = {'cross_sequence': lambda: quality.cache_source(
        AnnotatorCache(CACHE, num_classes=len(classes), class_names=classes), images, labels,
        len(classes))}
    for gap in SIMULATED_GAPS:
        sources[f'simulated_gap{gap:g}'] = (lambda g=gap: quality.simulated_source(
            SimulatedAnnotator(gap=g, seed=0, background_index=None), images, labels, classes))
    results = {}
    for name, make in sources.items():
        path = osp.join(work_root, f'quality_{QUALITY_SPLIT}_{name}.json')
        if not osp.exists(path):
            log(f'pseudo-label quality: {name} on the {len(unlabeled)} unlabeled images of '
                f'split {QUALITY_SPLIT}')
            start = time.perf_counter()
            out = quality.evaluate(make(), labeled, unlabeled, classes, alphas=ALPHAS,
                                   taus=TAUS, curve_alphas=CURVE_ALPHAS, progress=_progress)
            out['seconds'] = time.perf_counter() - start
            out['labeled'], out['unlabeled'] = len(labeled), len(unlabeled)
            _dump(out, path)
        with open(path) as f:
            results[name] = json.load(f)
    return results


def run_risk_quality(work_root):
    """Risk-filter quality of the cross-sequence annotator on the 1/8 split; cached as JSON."""
    import torch

    import quality
    from conformalsam_mmseg.annotators.cache import AnnotatorCache
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    torch.set_num_threads(os.cpu_count() or 1)
    classes = CamVidDataset.METAINFO['classes']
    images, labels = (osp.join(CAMVID, d, 'train') for d in ('images', 'labels'))
    labeled, unlabeled = split_stems(QUALITY_SPLIT)
    path = osp.join(work_root, f'risk_quality_{QUALITY_SPLIT}_cross_sequence.json')
    if not osp.exists(path):
        log(f'risk-filter quality on the {len(unlabeled)} unlabeled images of split '
            f'{QUALITY_SPLIT}')
        source = quality.cache_source(
            AnnotatorCache(CACHE, num_classes=len(classes), class_names=classes), images,
            labels, len(classes))
        start = time.perf_counter()
        out = quality.evaluate(source, labeled, unlabeled, classes, alphas=(0.05, 0.1),
                               taus=(0.5, 0.9, 0.95, 0.98), risk_targets=RISK_TARGETS,
                               progress=_progress)
        out['seconds'] = time.perf_counter() - start
        out['labeled'], out['unlabeled'] = len(labeled), len(unlabeled)
        _dump(out, path)
    with open(path) as f:
        return json.load(f)


def _dump(obj, path):
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def run_training(args, protocol):
    rows = [r for r in ROWS if r.name in args.rows]
    results, total = [], len(rows) * len(args.splits) * len(args.seeds)
    # The 1/8 split first: the quality tables are on it, and it is the headline column.
    splits = sorted(args.splits, key=lambda s: s != QUALITY_SPLIT)
    n = 0
    for seed in args.seeds:
        for split in splits:
            for row in rows:
                n += 1
                log(f'[{n}/{total}] {row.name}, split {split}, seed {seed}')
                r = training.run_row(row, split, seed, protocol, args.work_dir, log=log)
                log(f'    val mIoU {r["mIoU"]:.2f}, {r["wall_seconds"]:.0f} s')
                results.append(r)
    return results


def cache_size(path):
    from conformalsam_mmseg.annotators.cache import read_manifest
    files = [f for f in os.listdir(path) if f != 'cache_info.json']
    size = sum(osp.getsize(osp.join(path, f)) for f in files)
    manifest = read_manifest(path) or {}
    return dict(bytes=size, entries=len(files), codec=manifest.get('codec'),
                topk=manifest.get('topk'))


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    check_camvid()
    make_splits()
    annotator_seconds = make_annotator()
    if args.risk_only:
        import report
        path = report.write_risk(run_risk_quality(args.work_dir), args.out, QUALITY_SPLIT)
        log(f'done in {(time.perf_counter() - start) / 60:.1f} min: {path}')
        return
    protocol = dict(iters=args.iters, lr=args.lr, labeled_batch=4, log_interval=10,
                    annotator_cache=osp.relpath(CACHE, REPO))
    quality_results = {} if args.skip_quality else run_quality(args.work_dir)
    train_results = [] if args.skip_training else run_training(args, protocol)
    summary = dict(protocol=protocol, seeds=args.seeds, splits=args.splits, rows=args.rows,
                   quality_split=QUALITY_SPLIT, alphas=ALPHAS, taus=TAUS,
                   simulated_gaps=SIMULATED_GAPS, cache=cache_size(CACHE),
                   annotator_seconds=annotator_seconds,
                   wall_seconds=time.perf_counter() - start,
                   threads=os.cpu_count())
    _dump(dict(summary=summary, quality=quality_results, training=train_results),
          osp.join(args.work_dir, 'results.json'))
    import report
    path = report.write(args.work_dir, args.out, split_stems(QUALITY_SPLIT))
    log(f'done in {summary["wall_seconds"] / 60:.1f} min: {path}')


if __name__ == '__main__':
    main()
