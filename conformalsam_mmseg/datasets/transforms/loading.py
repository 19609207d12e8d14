import numpy as np
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadCheckedAnnotations(LoadAnnotations):
    """``LoadAnnotations`` that rejects label values outside ``[0, num_classes) U {ignore_index}``.

    A wrong label file (a colour PNG, a different class protocol, a forgotten void
    conversion) would otherwise train silently on garbage or crash deep inside the loss
    with a CUDA assert; here it fails at once with the file name.

    An image that comes with no dataset record (``mmseg.apis.inference_model``, which drops
    only the transforms named ``LoadAnnotations`` from the test pipeline) has no label to load
    and passes through; a dataset record without ``seg_map_path`` is an error naming the
    option that sets it.
    """

    def __init__(self, num_classes, ignore_index=255, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results):
        if 'seg_map_path' not in results:
            if 'seg_fields' not in results:   # not a dataset record: inference on an image
                return results
            raise KeyError(f"{results.get('img_path', 'an image')} has no label path: set the "
                           "dataset's data_prefix.seg_map_path (the label folder)")
        return super().transform(results)

    def _load_seg_map(self, results):
        super()._load_seg_map(results)
        seg = results['gt_seg_map']
        bad = np.unique(seg[(seg >= self.num_classes) & (seg != self.ignore_index)])
        if bad.size:
            raise ValueError(
                f"{results['seg_map_path']}: label values {bad.tolist()[:10]} are outside "
                f'0..{self.num_classes - 1} (and {self.ignore_index} = ignore). Check that the '
                'label file uses the dataset\'s class indices (not colours), and that void is '
                f'mapped to {self.ignore_index}, e.g. with tools/prepare_camvid.py for CamVid.')

    def __repr__(self):
        return (super().__repr__()[:-1] +
                f', num_classes={self.num_classes}, ignore_index={self.ignore_index})')
