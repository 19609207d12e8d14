import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomRescale(BaseTransform):
    """Rescale the image and its seg maps by r ~ U(ratio_range) of the image's own size.

    UniMatch and AllSpark draw the scale relative to each image (its long side times r),
    whereas mmcv's ``RandomResize`` scales a fixed target size. Seg maps use nearest
    interpolation (mmcv's ``Resize`` handles every field in ``seg_fields``).
    """

    def __init__(self, ratio_range=(0.5, 2.0), interpolation='bilinear'):
        low, high = ratio_range
        if not 0 < low <= high:
            raise ValueError(
                f'RandomRescale: ratio_range must satisfy 0 < low <= high, got {ratio_range}')
        self.ratio_range = (float(low), float(high))
        self.resize = TRANSFORMS.build(
            dict(type='Resize', scale=0, keep_ratio=True, interpolation=interpolation))

    def transform(self, results):
        h, w = results['img'].shape[:2]
        ratio = np.random.uniform(*self.ratio_range)
        self.resize.scale = (max(1, int(w * ratio + 0.5)), max(1, int(h * ratio + 0.5)))
        return self.resize(results)

    def __repr__(self):
        return f'{self.__class__.__name__}(ratio_range={self.ratio_range})'
