from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid in the 11-class SegNet protocol, 255 = void.

    Layout (``tools/prepare_camvid.py`` converts the raw SegNet folders into it)::

        data_root/images/{train,val,test}/<stem>.jpg
        data_root/labels/{train,val,test}/<stem>.png   values 0..10, 255 = void

    ``ann_file`` (optional) lists one stem per line, e.g. a labeled split written by
    ``tools/make_splits.py``.
    """
    METAINFO = dict(
        classes=('sky', 'building', 'pole', 'road', 'sidewalk', 'tree',
                 'sign_symbol', 'fence', 'car', 'pedestrian', 'bicyclist'),
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128],
                 [128, 64, 128], [0, 0, 192], [128, 128, 0], [192, 128, 128],
                 [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]])

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png', **kwargs):
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
