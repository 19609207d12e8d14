"""Data-loading throughput on CamVid with and without the annotator cache.

The unlabeled pipeline of configs/_base_/datasets/semi/camvid_semi.py (load, dummy map, resize
to half resolution, RandomRescale, RandomCrop, RandomFlip, then the weak view and two strong
views), run through the dataset's ``__getitem__`` in one process (num_workers=0, as inside one
data-loader worker), on real CamVid train images from ../shared/data/camvid:

- without: the pipeline as UniMatch trains with it;
- with:    the same pipeline with the annotator steps (what a ConformalSAM config trains with,
           ``annotated_pipeline``): ``LoadAnnotatorOutput`` after ``LoadImageFromFile``,
           ``PadSegFields`` after ``RandomCrop``, ``PackAnnotatorOutput`` for the weak view;

for cache codecs zlib and none, top-k 2 and 3. The caches are made in a temporary folder from
the cross-sequence annotator's cache (data/annotator_cache/camvid_cross_sequence, made by
tools/train_camvid_annotator.py) when it covers the images, else from
``SimulatedAnnotator(gap=0.5)`` on the CamVid train ground truth (the output says which).

Every round times each variant once over the same images with the same random seed (so every
variant makes the same crops and colour jitters), in an order rotated from round to round, so
that a change of machine load hits all variants alike. The ratio of a variant is its total time
over that of "without" across the rounds, and the range of the per-round ratios is shown.

Then the same for whole training batches (``--batches``, 0 skips): the train_dataloader of
configs/unimatch_conformalsam_camvid.py (4 labeled + 8 unlabeled images per batch: UniMatch's
batch u and its CutMix source) and of configs/conformalsam_camvid.py (4 + 4), each with and
without the dataset's ``annotator_cache``, num_workers=0, batches collated as in training; the unlabeled
images are the same CamVid train images, read from the 'none' caches, the labeled ones are
the 1/8 split's labeled images when data/splits/camvid/1-8 exists (else 40 other train
images).

  .venv/bin/python benchmarks/bench_annotator_loading.py [--images 120] [--rounds 5] \
      [--batches 30] [--breakdown]
"""
import argparse
import os
import os.path as osp
import random
import shutil
import tempfile
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CAMVID = osp.join(osp.dirname(REPO), 'shared', 'data', 'camvid')
SEMI_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'semi', 'camvid_semi.py')
CSAM_CONFIG = osp.join(REPO, 'configs', 'conformalsam_camvid.py')
UNIMATCH_CSAM_CONFIG = osp.join(REPO, 'configs', 'unimatch_conformalsam_camvid.py')
LABELED_SPLIT = osp.join(REPO, 'data', 'splits', 'camvid', '1-8', 'labeled.txt')
CROSS_SEQUENCE_CACHE = osp.join(REPO, 'data', 'annotator_cache', 'camvid_cross_sequence')
TARGET = 1.2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=120,
                        help='CamVid train images per timed pass (default: %(default)s)')
    parser.add_argument('--rounds', type=int, default=5, help='(default: %(default)s)')
    parser.add_argument('--batches', type=int, default=30,
                        help='training batches per timed pass and config; 0 skips the batch '
                        'measurement (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='(default: %(default)s)')
    parser.add_argument('--data-root', default=CAMVID, help='(default: ../shared/data/camvid)')
    parser.add_argument('--source-cache', default=CROSS_SEQUENCE_CACHE,
                        help='cache to re-encode (default: the cross-sequence annotator\'s)')
    parser.add_argument('--keep', metavar='DIR',
                        help='make the benchmark caches in DIR and keep them')
    parser.add_argument('--breakdown', action='store_true',
                        help='also print the time per transform (ms per image) of "without" '
                        'and of the top-3 variants, from one extra instrumented pass each')
    return parser.parse_args(argv)


def unlabeled_dataset_cfg(cfg, data_root):
    ds = cfg.train_dataloader.dataset.unlabeled
    ds.data_root = data_root
    ds.data_prefix = dict(img_path='images/train')
    ds.ann_file = ''  # every CamVid train image
    ds.serialize_data = False
    return ds


def build_dataset(ds_cfg, stems):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(ds_cfg)
    keep = set(stems)
    dataset.data_list = [d for d in dataset.data_list
                         if osp.splitext(osp.basename(d['img_path']))[0] in keep]
    assert len(dataset) == len(stems), (len(dataset), len(stems))
    return dataset


def make_caches(args, stems, classes, folder):
    """{(codec, k): cache dir} and a sentence saying where the probabilities come from."""
    import mmcv
    import torch

    from conformalsam_mmseg.annotators import (AnnotatorCache, SimulatedAnnotator,
                                               topk_to_dense, write_entry)
    source = AnnotatorCache(args.source_cache, num_classes=len(classes), class_names=classes)
    size = (360, 480)
    cross = all(source.is_valid(s, height=size[0], width=size[1]) for s in stems)
    simulated = None if cross else SimulatedAnnotator(gap=0.5, seed=0)
    if cross:
        k_src = source.load(stems[0], height=size[0], width=size[1]).meta['topk']
        if k_src < 3:
            cross, simulated = False, SimulatedAnnotator(gap=0.5, seed=0)
    what = (f'the cross-sequence annotator ({args.source_cache})' if cross else
            'SimulatedAnnotator(gap=0.5) on the CamVid train ground truth (the cross-sequence '
            f'cache {args.source_cache} is absent or incomplete)')
    dirs = {(codec, k): osp.join(folder, f'{codec}_top{k}')
            for codec in ('zlib', 'none') for k in (2, 3)}
    for stem in stems:
        img_path = osp.join(args.data_root, 'images', 'train', stem + '.jpg')
        if cross:
            entry = source.load(stem, height=size[0], width=size[1])
            probs = topk_to_dense(entry.index, entry.prob, len(classes))
        else:
            gt = mmcv.imread(osp.join(args.data_root, 'labels', 'train', stem + '.png'),
                             'unchanged')
            probs = simulated.annotate(mmcv.imread(img_path), classes, img_path=img_path,
                                       gt_seg_map=gt)
        probs = torch.as_tensor(probs)
        for (codec, k), d in dirs.items():
            write_entry(d, probs, stem=stem, class_names=classes, annotator='bench', topk=k,
                        codec=codec, fsync=False)
    return dirs, what


def time_pass(dataset, seed):
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def step_times(dataset, seed, repeats=2):
    """ms per image spent in each transform of the pipeline (top level; MultiBranch
    includes its branches)."""
    acc = {}
    originals = []
    for t in dataset.pipeline.transforms:
        name = type(t).__name__
        acc.setdefault(name, 0.0)
        originals.append((t, t.transform))

        def wrapped(results, _orig=t.transform, _name=name):
            start = time.perf_counter()
            out = _orig(results)
            acc[_name] += time.perf_counter() - start
            return out
        t.transform = wrapped
    try:
        for r in range(repeats):
            time_pass(dataset, seed + r)
    finally:
        for t, orig in originals:
            t.transform = orig
    n = repeats * len(dataset)
    return {k: 1000 * v / n for k, v in acc.items()}


def cache_bytes(folder):
    sizes = [os.path.getsize(osp.join(folder, n)) for n in os.listdir(folder)
             if n.endswith('.topk')]
    return sum(sizes) / max(len(sizes), 1)


def compare(variants, rounds, run, seed):
    """Time ``run(variant, seed + r)`` for every variant in every round (order rotated from
    round to round); {name: [seconds per round]}."""
    names = list(variants)
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(run(variants[n], seed + r))
        print(f'round {r + 1}: ' + ', '.join(f'{n} {times[n][-1]:.2f}s' for n in names),
              flush=True)
    return times


def ratio_rows(times, base_name, per_pass, unit, kib=None):
    """Print and return each variant's ratio to ``base_name`` (total time over total time)
    with the range of its per-round ratios."""
    base = np.array(times[base_name])
    rows = []
    print(f"\n{'variant':<34} {'KiB/image':>9} {unit + '/s':>9} {'ratio':>6} "
          f"{'per-round range':>16}")
    for n, t in times.items():
        t = np.array(t)
        per = t / base
        size = (kib or {}).get(n)
        rows.append(dict(variant=n, kib=size, per_second=per_pass * len(t) / t.sum(),
                         ratio=t.sum() / base.sum(), lo=per.min(), hi=per.max()))
        print(f"{n:<34} {'-' if size is None else f'{size:.0f}':>9} "
              f"{rows[-1]['per_second']:>9.1f} {rows[-1]['ratio']:>6.3f} {per.min():>7.3f} - "
              f"{per.max():.3f}")
    return rows


def time_batches(loader, seed, batches):
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    loader.sampler.set_epoch(seed)  # the same epoch for every variant: the same images
    start = time.perf_counter()
    for _, _batch in zip(range(batches), loader):
        pass
    return time.perf_counter() - start


def batch_loaders(args, stems, cache_dir, folder):
    """{name: DataLoader}: the train_dataloader of the two ConformalSAM CamVid configs with and
    without the annotator cache, on ``stems`` as unlabeled images."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    unlabeled_list = osp.join(folder, 'unlabeled.txt')
    with open(unlabeled_list, 'w') as f:
        f.write('\n'.join(stems) + '\n')
    labeled_list = LABELED_SPLIT
    if not osp.isfile(labeled_list):
        others = sorted(set(osp.splitext(n)[0] for n in os.listdir(
            osp.join(args.data_root, 'images', 'train')) if n.endswith('.jpg')) - set(stems))
        labeled_list = osp.join(folder, 'labeled.txt')
        with open(labeled_list, 'w') as f:
            f.write('\n'.join(others[:40]) + '\n')
    loaders = {}
    for label, path in (('UniMatch+ConformalSAM (4 + 8)', UNIMATCH_CSAM_CONFIG),
                        ('ConformalSAM (4 + 4)', CSAM_CONFIG)):
        for with_cache in (False, True):
            cfg = Config.fromfile(path)
            cfg.train_dataloader.dataset.annotator_cache = cache_dir if with_cache else None
            loader_cfg = cfg.train_dataloader
            loader_cfg.num_workers = 0
            loader_cfg.persistent_workers = False
            loader_cfg.sampler.seed = args.seed
            for part, ann_file in (('labeled', labeled_list), ('unlabeled', unlabeled_list)):
                ds = loader_cfg.dataset[part]
                ds.data_root = args.data_root
                ds.data_prefix = dict(img_path='images/train', seg_map_path='labels/train')
                ds.ann_file = ann_file
            with DefaultScope.overwrite_default_scope('mmseg'):
                loaders[f'{label}, {"with" if with_cache else "without"}'] = (
                    Runner.build_dataloader(loader_cfg))
    return loaders


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(osp.join(args.data_root, 'images', 'train')):
        print(f'skipped: the real CamVid data ({args.data_root}) is absent; it lives beside the '
              'repository in ../shared/data/camvid')
        return None
    import copy

    import cv2
    import torch
    from mmengine.config import Config

    import conformalsam_mmseg  # noqa: F401
    from conformalsam_mmseg.annotators.fields import INDEX_KEY
    from conformalsam_mmseg.datasets import CamVidDataset
    from conformalsam_mmseg.datasets.annotator_pipeline import annotated_pipeline
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in a data-loader worker (mmengine sets opencv_num_threads=0)

    classes = list(CamVidDataset.METAINFO['classes'])
    stems = sorted(osp.splitext(n)[0] for n in os.listdir(
        osp.join(args.data_root, 'images', 'train')) if n.endswith('.jpg'))
    stems = stems[::max(1, len(stems) // args.images)][:args.images]

    folder = args.keep or tempfile.mkdtemp(prefix='bench_annotator_loading_')
    try:
        dirs, what = make_caches(args, stems, classes, folder)
        plain_cfg = Config.fromfile(SEMI_CONFIG)
        csam_cfg = Config.fromfile(CSAM_CONFIG)
        variants = {'without cache': build_dataset(
            unlabeled_dataset_cfg(plain_cfg, args.data_root), stems)}
        with_cfg = unlabeled_dataset_cfg(csam_cfg, args.data_root)
        with_cfg.pipeline = annotated_pipeline(with_cfg.pipeline,
                                               csam_cfg.train_dataloader.dataset.annotator_cache,
                                               classes)
        steps = [s['type'] for s in with_cfg.pipeline]
        for (codec, k), d in dirs.items():
            ds_cfg = copy.deepcopy(with_cfg)
            for step in ds_cfg.pipeline:
                if step['type'] == 'LoadAnnotatorOutput':
                    step['cache_dir'] = d
            variants[f'{codec}, top-{k}'] = build_dataset(ds_cfg, stems)
        print(f'CamVid train, {len(stems)} images at 480 x 360 per pass, {args.rounds} rounds, '
              'num_workers=0, 1 thread')
        print(f'annotator output: {what}')
        print('pipeline with the cache: ' + ' -> '.join(steps))
        # one untimed pass each: every image and cache file in the page cache, lazy imports
        # done (else the first timed pass of 'without' reads cold JPEGs from disk)
        for ds in variants.values():
            time_pass(ds, args.seed)
        sample = variants['zlib, top-3'][0]['data_samples']
        assert 'unsup_weak' in sample and hasattr(sample['unsup_weak'], INDEX_KEY)

        times = compare(variants, args.rounds, time_pass, args.seed)
        kib = {n: cache_bytes(dirs[_key(n)]) / 1024 for n in variants if n != 'without cache'}
        rows = ratio_rows(times, 'without cache', len(stems), 'images', kib)
        if args.breakdown:
            print('\nms per image and transform (one instrumented run; MultiBranch = the three '
                  'views, packing included):')
            for n in ('without cache', 'zlib, top-3', 'none, top-3'):
                t = step_times(variants[n], args.seed)
                print(f'{n:<15} total {sum(t.values()):.2f}: '
                      + ', '.join(f'{k} {v:.2f}' for k, v in t.items()))
        meets = [r['variant'] for r in rows[1:] if r['ratio'] <= TARGET]
        print(f'\ntarget: at most {TARGET}x the time without the cache; met by: '
              + (', '.join(meets) if meets else 'none'))
        result = dict(rows=rows, source=what, images=len(stems), rounds=args.rounds)

        if args.batches:
            print(f'\ntraining batches: {args.batches} per pass, the unlabeled images from the '
                  "'none, top-3' cache, num_workers=0, 1 thread")
            loaders = batch_loaders(args, stems, dirs[('none', 3)], folder)
            for loader in loaders.values():
                time_batches(loader, args.seed, args.batches)
            times = compare(loaders, args.rounds,
                            lambda loader, seed: time_batches(loader, seed, args.batches),
                            args.seed)
            result['batch_rows'] = []
            for label in dict.fromkeys(n.rsplit(', ', 1)[0] for n in loaders):
                pair = {n: t for n, t in times.items() if n.startswith(label)}
                result['batch_rows'] += ratio_rows(pair, f'{label}, without', args.batches,
                                                   'batches')
        return result
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

def _key(name):
    codec, k = name.split(', top-')
    return codec, int(k)


if __name__ == '__main__':
    main()
