from .annotator_pseudo_label_head import AnnotatorPseudoLabelHead, SEEMPseudoLabelHead
from .unimatch_deeplabv3plus_head import UniMatchDeepLabV3PlusHead

__all__ = ['AnnotatorPseudoLabelHead', 'SEEMPseudoLabelHead', 'UniMatchDeepLabV3PlusHead']
