from .backbones import EfficientNetLite0
from .segmentors import SemiSegmentor, UniMatch

__all__ = ['EfficientNetLite0', 'SemiSegmentor', 'UniMatch']
