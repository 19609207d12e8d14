from .backbones import EfficientNetLite0
from .data_preprocessors import MultiBranchDataPreprocessor
from .heads import SEEMPseudoLabelHead
from .segmentors import ConformalSAM, SelfReliance, SemiSegmentor, UniMatch
from .weighting import DynamicLossWeighter

__all__ = [
    'EfficientNetLite0', 'MultiBranchDataPreprocessor', 'SemiSegmentor', 'UniMatch',
    'SelfReliance', 'ConformalSAM', 'SEEMPseudoLabelHead', 'DynamicLossWeighter'
]
