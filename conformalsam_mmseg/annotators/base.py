"""One interface for every annotator: an image and class names in, per-class probabilities out.

Images are given as mmcv/mmseg load them: ``(H, W, 3)`` uint8 in **BGR** order
(``mmcv.imread``, ``LoadImageFromFile``). Every backend converts to what its model wants (RGB
for SEEM and CLIPSeg) itself, so callers never have to.
"""
import os.path as osp
from abc import ABC, abstractmethod

import numpy as np
import torch


def image_stem(img_path):
    """The key an image's cache entry is stored under: its file name without the extension
    (``.../JPEGImages/2008_004112.jpg`` -> ``2008_004112``)."""
    return osp.splitext(osp.basename(str(img_path)))[0]


class BaseAnnotator(ABC):
    """A foundation-model annotator.

    Subclasses implement :meth:`annotate`. ``needs_ground_truth`` is True for annotators that
    read the image's label map (only :class:`SimulatedAnnotator`, for benchmarks), and
    ``name`` is the registry name recorded in the cache.

    Output contract of :meth:`annotate`: a float32 CPU tensor ``(K, H, W)`` at the image's
    original size, K = ``len(class_names)``, values in [0, 1]. Whether the K values of a pixel sum
    to 1 depends on the backend (documented on each); every backend shipped here normalises by
    default.
    """
    needs_ground_truth = False

    @property
    def name(self):
        return type(self).__name__

    @abstractmethod
    def annotate(self, image, class_names, *, img_path=None, gt_seg_map=None):
        """Per-class probabilities of one image.

        Args:
            image: ``(H, W, 3)`` uint8 array, BGR (as ``mmcv.imread`` gives it).
            class_names: the K class names, in the dataset's class order (prompts are built from
                them; index k of the output is ``class_names[k]``).
            img_path: the image's file (used by annotators keyed by image, e.g. the cache, and
                to seed the simulated one per image).
            gt_seg_map: ``(H, W)`` integer labels, 255 = ignore; required when
                ``needs_ground_truth`` is True, ignored otherwise.

        Returns:
            ``(K, H, W)`` float32 tensor on the CPU.
        """

    def annotate_batch(self, images, class_names, *, img_paths=None, gt_seg_maps=None):
        """:meth:`annotate` over a list of images (sizes may differ); a list of (K, H, W)
        tensors. Backends that can batch override it."""
        n = len(images)
        img_paths = img_paths if img_paths is not None else [None] * n
        gt_seg_maps = gt_seg_maps if gt_seg_maps is not None else [None] * n
        return [self.annotate(img, class_names, img_path=p, gt_seg_map=g)
                for img, p, g in zip(images, img_paths, gt_seg_maps)]

    # --- helpers for subclasses ----------------------------------------------------------
    @staticmethod
    def check_image(image):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f'an annotator takes one (H, W, 3) uint8 BGR image (as mmcv.imread loads it), '
                f'got shape {image.shape} and dtype {image.dtype}')
        return image

    @staticmethod
    def check_class_names(class_names):
        names = [str(c) for c in class_names]
        if not names:
            raise ValueError('class_names is empty; pass the dataset\'s classes, e.g. '
                             "dataset.metainfo['classes']")
        return names

    def check_output(self, probs, image, class_names):
        h, w = image.shape[:2]
        expected = (len(class_names), h, w)
        if tuple(probs.shape) != expected:
            raise RuntimeError(f'{self.name} returned shape {tuple(probs.shape)}, expected '
                               f'(K, H, W) = {expected}')
        return probs.detach().to('cpu', torch.float32).contiguous()

    def __repr__(self):
        return f'{self.name}()'
