from .camvid import CamVidDataset
from .transforms import LoadCheckedAnnotations

__all__ = ['CamVidDataset', 'LoadCheckedAnnotations']
