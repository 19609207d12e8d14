from .camvid import CamVidDataset
from .synthetic_shapes import SyntheticShapesDataset, make_shapes_dataset
from .transforms import LoadCheckedAnnotations, RandomRescale

__all__ = [
    'CamVidDataset', 'SyntheticShapesDataset', 'make_shapes_dataset',
    'LoadCheckedAnnotations', 'RandomRescale'
]
