from .camvid import CamVidDataset
from .samplers import MultiSourceSampler
from .semi_dataset import SemiDataset
from .synthetic_shapes import SyntheticShapesDataset, make_shapes_dataset
from .transforms import (ColorJitter, GaussianBlur, LoadCheckedAnnotations, LoadDummySegMap,
                         MultiBranch, RandomRescale)

__all__ = [
    'CamVidDataset', 'SyntheticShapesDataset', 'make_shapes_dataset', 'SemiDataset',
    'MultiSourceSampler', 'LoadCheckedAnnotations', 'RandomRescale', 'LoadDummySegMap',
    'MultiBranch', 'ColorJitter', 'GaussianBlur'
]
