"""Cached annotator outputs in the training pipeline, as extra seg fields.

A pipeline for unlabeled images (the "dummy label" is a 0-filled map, 255 after padding)::

    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotatorOutput', cache_dir='data/annotator/voc_seem', num_classes=21),
    ...,                                   # Resize / RandomRescale / RandomCrop / RandomFlip
    dict(type='PadSegFields', size=crop_size, pad_val=dict(img=0, seg=255)),
    dict(type='PackAnnotatorOutput'),      # PackSegInputs + the annotator fields

``LoadAnnotatorOutput`` adds ONE (H, W, 2k) uint8 array to ``results`` and to
``results['seg_fields']``, ``annotator_topk_map``: channels 0..k-1 hold the class of rank j,
channels k..2k-1 its probability, quantised (p = v / 255). It is the cache entry's payload as
read (the cache stores it pixel-major), and one field instead of two halves the per-field work
of every geometric transform. mmseg's ``Resize`` (hence ``RandomRescale``),
``RandomCrop`` and ``RandomFlip`` transform every seg field with the image (nearest
interpolation for resizing, so quantised probabilities are never blended, and classes and
probabilities move together). mmcv's ``Pad`` pads only ``gt_seg_map``: use ``PadSegFields``
(the same transform, padding every seg field, and copying nothing that is already at the
size) so that padded pixels get index 255 (and prob 255) in the annotator field too;
``AnnotatorPseudoLabelHead`` rejects them. ``SegDataPreProcessor`` pads only ``gt_sem_seg``, so
the pipeline itself must pad to the crop size.

``PackAnnotatorOutput`` is ``PackSegInputs`` plus the two fields as ``PixelData`` in the
``SegDataSample``: ``annotator_topk_index`` and ``annotator_topk_prob``, (k, H, W) uint8
tensors (kept uint8 to move 8x fewer bytes than int64/float32 through the data loader;
``AnnotatorPseudoLabelHead`` converts them).
"""
import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform, Pad
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

from ...annotators.base import image_stem
from ...annotators.cache import AnnotatorCache
from ...annotators.fields import INDEX_KEY, MAP_KEY, PROB_KEY, TOPK_KEY


@TRANSFORMS.register_module()
class LoadAnnotatorOutput(BaseTransform):
    """Load an image's cached top-k annotator output as seg fields.

    Place it right after ``LoadImageFromFile`` (before any transform that changes the image
    size): the entry is checked against the image's original size.

    Args:
        cache_dir: the folder written by ``tools/generate_pseudo_labels.py``.
        num_classes: K; entries made for another number of classes are stale.
        classes: optional class names; when given, entries must have been made with exactly
            these names in this order.
        annotator: optional annotator name entries must come from.
        topk: optional k entries must hold.

    A missing or stale entry raises ``CacheEntryError`` naming the image and the
    ``tools/generate_pseudo_labels.py`` command that makes it.
    """

    def __init__(self, cache_dir, num_classes, classes=None, annotator=None, topk=None):
        self.cache = AnnotatorCache(cache_dir, num_classes=num_classes, class_names=classes,
                                    annotator=annotator, topk=topk)

    def transform(self, results):
        h, w = results['img'].shape[:2]
        ori = results.get('ori_shape')
        if ori is not None and tuple(ori[:2]) != (h, w):
            raise ValueError(
                f'LoadAnnotatorOutput: the image is {h} x {w} but was loaded at {ori[0]} x '
                f'{ori[1]}; put LoadAnnotatorOutput right after LoadImageFromFile, before any '
                'transform that resizes, crops or pads, so that one transform moves both')
        img_path = results.get('img_path')
        entry = self.cache.load(image_stem(img_path), height=h, width=w, img_path=img_path)
        results[MAP_KEY] = entry.map
        seg_fields = results.setdefault('seg_fields', [])
        if MAP_KEY not in seg_fields:
            seg_fields.append(MAP_KEY)
        results[TOPK_KEY] = entry.topk
        return results

    def __repr__(self):
        c = self.cache
        return (f'{type(self).__name__}(cache_dir={c.cache_dir!r}, num_classes={c.num_classes}'
                f', annotator={c.annotator!r}, topk={c.topk})')


def _planes(arr):
    """(H, W, c) -> a new contiguous (c, H, W) array. For c <= 4 (top-1 and top-2 entries)
    OpenCV splits 4x faster than numpy's transposing copy (it has SIMD paths up to 4
    channels); beyond that the two are equal."""
    out = np.empty((arr.shape[2], ) + arr.shape[:2], arr.dtype)
    if arr.shape[2] <= 4:
        cv2.split(arr, list(out))
    else:
        out[...] = arr.transpose(2, 0, 1)
    return out


@TRANSFORMS.register_module()
class PadSegFields(Pad):
    """mmcv's ``Pad`` that pads every seg field (mmcv's pads only ``gt_seg_map``).

    Same arguments as ``Pad``; seg fields, (H, W) or (H, W, k), are padded at the bottom and
    right with ``pad_val['seg']`` (default 255), or with ``padding_mode``. An image or field
    already at the padded size is kept as it is (no copy).
    """

    def _pad_img(self, results):
        img = results['img']
        # the pipelines' case, a fixed size: an image already at it is kept as it is
        if (self.size is not None and self.size_divisor is None and not self.pad_to_square
                and img.shape[:2] == tuple(self.size[::-1])):
            results.update(pad_shape=img.shape, pad_fixed_size=self.size,
                           pad_size_divisor=None, img_shape=img.shape[:2])
            return
        super()._pad_img(results)

    def _pad_seg(self, results):
        pad_val = self.pad_val.get('seg', 255)
        height, width = results['pad_shape'][:2]
        keys = list(results.get('seg_fields', []))
        if 'gt_seg_map' not in keys:
            keys.append('gt_seg_map')
        for key in keys:
            seg = results.get(key)
            if seg is None:
                continue
            h, w = seg.shape[:2]
            if h > height or w > width:
                raise ValueError(f'PadSegFields: {key} is {h} x {w}, larger than the padded '
                                 f'image {height} x {width}')
            if (h, w) == (height, width):
                continue
            pad = ((0, height - h), (0, width - w)) + ((0, 0), ) * (seg.ndim - 2)
            if self.padding_mode == 'constant':
                results[key] = np.pad(seg, pad, mode='constant', constant_values=pad_val)
            else:  # mmcv's 'edge', 'reflect' and 'symmetric' are numpy's modes of those names
                results[key] = np.pad(seg, pad, mode=self.padding_mode)


@TRANSFORMS.register_module()
class PackAnnotatorOutput(PackSegInputs):
    """``PackSegInputs`` plus the annotator fields; use it in place of ``PackSegInputs``.

    Adds to the ``SegDataSample``: ``annotator_topk_index`` and ``annotator_topk_prob``,
    ``PixelData`` of (k, H, W) uint8 tensors (index 255 = padded pixel; probability
    p = v / 255), and the metainfo key ``annotator_topk`` (k). Same arguments as
    ``PackSegInputs``; ``annotator_topk`` is added to ``meta_keys``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if TOPK_KEY not in self.meta_keys:
            self.meta_keys = tuple(self.meta_keys) + (TOPK_KEY, )

    def transform(self, results):
        if MAP_KEY not in results:
            raise KeyError(f'PackAnnotatorOutput: no {MAP_KEY} in the results; add '
                           'LoadAnnotatorOutput to the pipeline (after LoadImageFromFile), '
                           'and in a MultiBranch, use PackAnnotatorOutput in the branch that '
                           'exclusive_keys gives the annotator fields to')
        arr, k = results[MAP_KEY], int(results[TOPK_KEY])
        h, w = results['img'].shape[:2]
        if arr.shape[:2] != (h, w):
            raise ValueError(
                f'PackAnnotatorOutput: {MAP_KEY} is {arr.shape[0]} x {arr.shape[1]} but the '
                f'image is {h} x {w}. A transform moved the image without it: pad with '
                'PadSegFields (mmcv\'s Pad pads only gt_seg_map) and use mmseg\'s Resize, '
                'RandomCrop and RandomFlip, which transform every seg field')
        if arr.shape[2] != 2 * k:
            raise ValueError(f'PackAnnotatorOutput: {MAP_KEY} has {arr.shape[2]} channels, '
                             f'expected 2 x {TOPK_KEY} = {2 * k}; a transform changed it')
        packed = super().transform(results)
        sample = packed['data_samples']
        # one (2k, H, W) tensor: index and prob are views of one storage, which crosses from a
        # data-loader worker to the trainer as one shared-memory block
        planes = torch.from_numpy(_planes(arr))
        sample.set_data({INDEX_KEY: PixelData(data=planes[:k]),
                         PROB_KEY: PixelData(data=planes[k:])})
        return packed
