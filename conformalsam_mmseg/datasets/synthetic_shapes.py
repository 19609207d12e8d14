"""A small segmentation data set the project generates itself (the demo and the tests).

Each image holds a few filled discs, squares and triangles of random size and position
on a noisy, smoothly shaded, low-saturation background. Each class has its own hue, jittered
so that hues overlap between classes: colour helps, but shape decides the hard pixels, and
touching or overlapping shapes give real boundaries.
"""
import os
import os.path as osp

import cv2
import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

SHAPES_CLASSES = ('background', 'disc', 'square', 'triangle')
SHAPES_PALETTE = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [255, 200, 0]]


@DATASETS.register_module()
class SyntheticShapesDataset(BaseSegDataset):
    """The generated shapes data: ``images/<split>/*.png`` and ``labels/<split>/*.png``."""
    METAINFO = dict(classes=SHAPES_CLASSES, palette=SHAPES_PALETTE)

    def __init__(self, img_suffix='.png', seg_map_suffix='.png', **kwargs):
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


def _background(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(70, 170) + rng.uniform(-20, 20, size=3)
    slope = rng.uniform(-0.6, 0.6, size=(2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    img += rng.normal(0, 18, size=(h, w, 3))
    return img


def _draw_shape(rng, img, label, cls, h, w):
    color = tuple(float(c) for c in np.clip(
        np.array(SHAPES_PALETTE[cls][::-1]) + rng.normal(0, 45, size=3), 0, 255))
    size = int(rng.uniform(0.08, 0.22) * min(h, w))
    cx, cy = int(rng.integers(size, w - size)), int(rng.integers(size, h - size))
    if cls == 1:
        cv2.circle(img, (cx, cy), size, color, -1)
        cv2.circle(label, (cx, cy), size, cls, -1)
        return
    if cls == 2:
        angle = rng.uniform(0, np.pi / 2)
        corners = [angle + k * np.pi / 2 + np.pi / 4 for k in range(4)]
    else:
        angle = rng.uniform(0, 2 * np.pi)
        corners = [angle + k * 2 * np.pi / 3 for k in range(3)]
    radius = size * (1.25 if cls == 3 else 1.0)
    pts = np.array([[cx + radius * np.cos(a), cy + radius * np.sin(a)] for a in corners],
                   dtype=np.int32)
    cv2.fillPoly(img, [pts], color)
    cv2.fillPoly(label, [pts], cls)


def make_shapes_image(rng, height=96, width=128, max_shapes=4):
    """One (BGR uint8 image, uint8 label map) pair."""
    img = _background(rng, height, width)
    label = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        _draw_shape(rng, img, label, int(rng.integers(1, len(SHAPES_CLASSES))), height, width)
    img = cv2.GaussianBlur(img, (3, 3), 0.8) + rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), label


def make_shapes_dataset(root, num_train=160, num_val=40, height=96, width=128, seed=0):
    """Write the data set under ``root`` (skipped if it is already complete); returns ``root``."""
    # One independent stream per split, so a split is the same whether or not the other
    # one had to be generated in this call.
    streams = np.random.SeedSequence(seed).spawn(2)
    for (split, count), stream in zip((('train', num_train), ('val', num_val)), streams):
        img_dir, lbl_dir = osp.join(root, 'images', split), osp.join(root, 'labels', split)
        if (osp.isdir(lbl_dir) and len(os.listdir(lbl_dir)) == count
                and len(os.listdir(img_dir)) == count):
            continue
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(lbl_dir, exist_ok=True)
        rng = np.random.default_rng(stream)
        for i in range(count):
            img, label = make_shapes_image(rng, height, width)
            cv2.imwrite(osp.join(img_dir, f'{split}_{i:04d}.png'), img)
            cv2.imwrite(osp.join(lbl_dir, f'{split}_{i:04d}.png'), label)
    return root
