from .seem_pseudo_label_head import SEEMPseudoLabelHead
from .unimatch_deeplabv3plus_head import UniMatchDeepLabV3PlusHead

__all__ = ['SEEMPseudoLabelHead', 'UniMatchDeepLabV3PlusHead']
