"""Annotator cache size per image: VOC, ADE20K and CamVid sizes and class counts, k = 2 and 3,
codecs zlib and none (docs/annotators.md, "Size per image").

No foundation model runs here, so the probabilities come from generated label maps, turned
into probabilities two ways that bracket a real model:

- noisy: ``SimulatedAnnotator(gap=0.5)``: smooth logit noise everywhere, so probabilities vary
  in every region and the 2nd / 3rd classes change from pixel to pixel (pessimistic);
- clean: a confident segmentor's output: softmax of 8 x one-hot logits at stride 8, bilinearly
  upsampled (smooth boundaries, saturated interiors).

Label maps: VOC-like (background + 3 objects of 21 classes, 500 x 375), ADE20K-like (8 wobbly
Voronoi "stuff" regions + 10 objects of 150 classes, 683 x 512), CamVid-like (5 stuff regions
+ 8 objects of 11 classes, 480 x 360). When they exist, two real sources are added: the
cross-sequence CamVid annotator's cache (a real model; tools/train_camvid_annotator.py) and
SimulatedAnnotator(gap=0.5) on the three real VOC label maps of ../shared/data/voc_mini.

  .venv/bin/python benchmarks/bench_cache_size.py [--images 10]
"""
import argparse
import os
import os.path as osp

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO), 'shared', 'data')
CROSS_SEQUENCE_CACHE = osp.join(REPO, 'data', 'annotator_cache', 'camvid_cross_sequence')
# name: (height, width, classes, stuff regions, objects, background class or None)
KINDS = {
    'VOC': (375, 500, 21, 0, 3, 0),
    'ADE20K': (512, 683, 150, 8, 10, None),
    'CamVid': (360, 480, 11, 5, 8, None),
}


def label_map(rng, height, width, num_classes, stuff, objects):
    """Stuff: Voronoi cells with wobbly borders (class 0 everywhere when there are none);
    objects: ellipses of random classes on top."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    labels = np.zeros((height, width), np.uint8)
    if stuff:
        wobble = 0.04 * min(height, width)
        y = yy + wobble * np.sin(xx / (0.07 * width) + rng.uniform(0, 6))
        x = xx + wobble * np.sin(yy / (0.07 * height) + rng.uniform(0, 6))
        seeds = rng.uniform((0, 0), (height, width), (stuff, 2))
        dist = (y[None] - seeds[:, 0, None, None])**2 + (x[None] - seeds[:, 1, None, None])**2
        labels = rng.choice(num_classes, stuff)[dist.argmin(0)].astype(np.uint8)
    first = 1 if not stuff else 0  # VOC-like: objects are never the background
    for _ in range(objects):
        cy, cx = rng.uniform((0, 0), (height, width))
        ry, rx = rng.uniform(0.05, 0.25, 2) * (height, width)
        inside = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        labels[inside] = rng.integers(first, num_classes)
    return labels


def clean_probs(labels, num_classes, stride=8, scale=8.0):
    import torch
    import torch.nn.functional as F
    small = torch.from_numpy(labels[::stride, ::stride].astype(np.int64))
    logits = F.one_hot(small, num_classes).permute(2, 0, 1)[None].float() * scale
    logits = F.interpolate(logits, size=labels.shape, mode='bilinear', align_corners=False)
    return logits[0].softmax(0)


def entry_sizes(probs, classes, name):
    """{(codec, k): bytes} of the cache file of ``probs``."""
    from conformalsam_mmseg.annotators.cache import encode_entry
    return {(codec, k): len(encode_entry(probs, stem=name, class_names=classes,
                                         annotator='bench', topk=k, codec=codec))
            for codec in ('zlib', 'none') for k in (2, 3)}


def mean_kib(sizes):
    return {key: np.mean([s[key] for s in sizes]) / 1024 for key in sizes[0]}


def synthetic_rows(images, seed):
    from conformalsam_mmseg.annotators import SimulatedAnnotator
    rows = {}
    for kind, (h, w, num_classes, stuff, objects, background) in KINDS.items():
        rng = np.random.default_rng(seed)
        annotator = SimulatedAnnotator(gap=0.5, seed=seed, background_index=background)
        classes = [f'c{i}' for i in range(num_classes)]
        noisy, clean = [], []
        for i in range(images):
            labels = label_map(rng, h, w, num_classes, stuff, objects)
            image = np.zeros((h, w, 3), np.uint8)
            probs = annotator.annotate(image, classes, img_path=f'{kind}_{i}.png',
                                       gt_seg_map=labels)
            noisy.append(entry_sizes(probs, classes, f'{kind}_{i}'))
            clean.append(entry_sizes(clean_probs(labels, num_classes), classes, f'{kind}_{i}'))
        rows[f'{kind} ({w} x {h}, {num_classes}), generated maps'] = dict(
            noisy=mean_kib(noisy), clean=mean_kib(clean))
        print(f'{kind}: {images} images', flush=True)
    return rows


def real_rows(images):
    from PIL import Image

    from conformalsam_mmseg.annotators import (AnnotatorCache, SimulatedAnnotator,
                                               topk_to_dense)
    rows = {}
    voc = osp.join(SHARED, 'voc_mini')
    labels_dir = osp.join(voc, 'SegmentationClass')
    if osp.isdir(labels_dir):
        annotator = SimulatedAnnotator(gap=0.5, seed=0)
        classes = [f'c{i}' for i in range(21)]
        noisy, clean = [], []
        for name in sorted(os.listdir(labels_dir)):
            labels = np.array(Image.open(osp.join(labels_dir, name)))  # palette indices
            stem = osp.splitext(name)[0]
            probs = annotator.annotate(np.zeros(labels.shape + (3, ), np.uint8), classes,
                                       img_path=name, gt_seg_map=labels)
            noisy.append(entry_sizes(probs, classes, stem))
            # void (255, object borders) as background for the confident segmentor
            clean.append(entry_sizes(clean_probs(np.where(labels == 255, 0, labels), 21),
                                     classes, stem))
        if noisy:
            rows[f'VOC, the {len(noisy)} real label maps of voc_mini'] = dict(
                noisy=mean_kib(noisy), clean=mean_kib(clean))
    if osp.isdir(CROSS_SEQUENCE_CACHE):
        from conformalsam_mmseg.datasets import CamVidDataset
        classes = list(CamVidDataset.METAINFO['classes'])
        cache = AnnotatorCache(CROSS_SEQUENCE_CACHE, class_names=classes)
        stems = sorted(n[:-5] for n in os.listdir(CROSS_SEQUENCE_CACHE) if n.endswith('.topk'))
        sizes = []
        for stem in stems[::max(1, len(stems) // images)][:images]:
            entry = cache.load(stem)
            if entry.topk < 3:
                break
            sizes.append(entry_sizes(topk_to_dense(entry.index, entry.prob, len(classes)),
                                     classes, stem))
        if sizes:
            rows[f'CamVid train (real images, {len(sizes)})'] = dict(real=mean_kib(sizes))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=10,
                        help='generated images per data set (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='(default: %(default)s)')
    args = parser.parse_args(argv)
    rows = synthetic_rows(args.images, args.seed)
    rows.update(real_rows(max(args.images, 20)))
    print('\nKiB per image (mean). zlib: noisy = SimulatedAnnotator(gap=0.5), clean = a '
          'confident segmentor, real = the cross-sequence CamVid annotator\n')
    columns = ('noisy', 'clean', 'real')
    print('| data (size, K) | k | zlib, noisy | zlib, clean | zlib, real model | none (raw) |')
    print('|---|---|---|---|---|---|')
    for name, row in rows.items():
        for k in (2, 3):
            cells = [f'{row[c][("zlib", k)]:.0f} KiB' if c in row else '-' for c in columns]
            raw = next(iter(row.values()))[('none', k)]
            print(f'| {name} | {k} | ' + ' | '.join(cells) + f' | {raw:.0f} KiB |')
    return rows


if __name__ == '__main__':
    main()
