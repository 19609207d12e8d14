import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadDummySegMap(BaseTransform):
    """Give an unlabeled image a seg map of zeros, the source of UniMatch's ignore mask.

    Stands where ``LoadAnnotations`` stands in a labeled pipeline (right after
    ``LoadImageFromFile``): ``gt_seg_map`` becomes a uint8 map of zeros of the image size and
    is registered in ``seg_fields``, so ``Resize`` / ``RandomRescale`` / ``RandomCrop`` /
    ``RandomFlip`` move it with the image (nearest interpolation keeps it 0), and
    ``SegDataPreProcessor`` pads it with ``seg_pad_val`` = 255 where it pads the image. After
    the data preprocessor, the packed ``gt_sem_seg`` of an unlabeled sample reads
    0 = image pixel, 255 = padding: UniMatch's ``ignore_mask`` (its 254-padded mask, turned
    into 255 where padded). It holds no class information; never train on it as labels.

    Use ``RandomCrop(..., cat_max_ratio=1.0)`` (the default) after it: a map of one value
    never passes the ``cat_max_ratio < 1`` test, so mmseg would redraw the crop 10 times for
    nothing and keep the last draw, a uniform crop all the same.

    The label file of an unlabeled image is never read (it may not exist, as for most of
    VOC's unlabeled ids); an unlabeled dataset may omit ``seg_map_path`` from ``data_prefix``.

    Added keys: gt_seg_map (and 'gt_seg_map' in seg_fields).
    """

    def transform(self, results):
        if results.get('gt_seg_map') is not None:
            raise ValueError(
                'LoadDummySegMap: the sample already holds a gt_seg_map (from '
                f"{results.get('seg_map_path')!r}); an unlabeled pipeline must not load "
                'annotations: remove LoadAnnotations / LoadCheckedAnnotations before it.')
        results['gt_seg_map'] = np.zeros(results['img'].shape[:2], np.uint8)
        seg_fields = results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in seg_fields:
            seg_fields.append('gt_seg_map')
        return results
