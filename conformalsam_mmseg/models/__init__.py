from .backbones import EfficientNetLite0
from .data_preprocessors import MultiBranchDataPreprocessor
from .heads import AnnotatorPseudoLabelHead, SEEMPseudoLabelHead
from .losses import ProbOhemLoss
from .segmentors import (AllSpark, ConformalSAM, SelfReliance, SemiSegmentor, UniMatch,
                         check_equal_batches)
from .weighting import DynamicLossWeighter

__all__ = [
    'EfficientNetLite0', 'MultiBranchDataPreprocessor', 'SemiSegmentor', 'UniMatch', 'AllSpark',
    'SelfReliance', 'ConformalSAM', 'AnnotatorPseudoLabelHead', 'SEEMPseudoLabelHead',
    'DynamicLossWeighter', 'ProbOhemLoss', 'check_equal_batches'
]
