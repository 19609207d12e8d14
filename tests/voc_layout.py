"""A tiny PASCAL VOC in the layout the VOC configs read (docs/datasets.md), made in a test.

``make_voc_workspace(root)`` writes ``root/data/VOCdevkit/VOC2012`` (JPEGImages,
SegmentationClass, ImageSets/Segmentation/val.txt) and ``root/data/splits/voc_classic/366``
(labeled.txt, unlabeled.txt), and links ``root/tools`` and ``root/configs`` to the repository's,
so that the README's commands run in ``root`` exactly as written.
"""
import os
import os.path as osp

import cv2
import numpy as np
from PIL import Image

from conftest import REPO

VOC = osp.join('data', 'VOCdevkit', 'VOC2012')
SPLIT = osp.join('data', 'splits', 'voc_classic', '366')


def _palette():
    palette = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette.flatten().tolist()


def make_voc_workspace(root, num_labeled=3, num_unlabeled=3, size=(60, 80), seed=0,
                       unlabeled_masks=False):
    """Images with one coloured rectangle of a random VOC class on noise; masks for the
    labeled (and val) images only, as VOC classic's unlabeled images have none in
    SegmentationClass unless ``unlabeled_masks``. Returns (labeled stems, unlabeled stems)."""
    root = str(root)
    voc = osp.join(root, VOC)
    for sub in ('JPEGImages', 'SegmentationClass', osp.join('ImageSets', 'Segmentation')):
        os.makedirs(osp.join(voc, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    stems = [f'2008_{i:06d}' for i in range(num_labeled + num_unlabeled)]
    labeled, unlabeled = stems[:num_labeled], stems[num_labeled:]
    h, w = size
    for stem in stems:
        img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        label = np.zeros((h, w), np.uint8)
        cls = int(rng.integers(1, 21))
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        label[y:y + h // 2, x:x + w // 2] = cls
        img[label == cls] = (40 + 10 * cls, 255 - 10 * cls, 120)
        cv2.imwrite(osp.join(voc, 'JPEGImages', stem + '.jpg'), img)
        if stem in labeled or unlabeled_masks:
            mask = Image.fromarray(label, 'P')
            mask.putpalette(_palette())
            mask.save(osp.join(voc, 'SegmentationClass', stem + '.png'))
    _write(osp.join(voc, 'ImageSets', 'Segmentation', 'val.txt'), labeled[:2])
    _write(osp.join(root, SPLIT, 'labeled.txt'), labeled)
    _write(osp.join(root, SPLIT, 'unlabeled.txt'), unlabeled)
    for name in ('tools', 'configs'):
        if not osp.exists(osp.join(root, name)):
            os.symlink(osp.join(REPO, name), osp.join(root, name))
    return labeled, unlabeled


def _write(path, stems):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(s + '\n' for s in stems))
