from .conformalsam import ConformalSAM
from .self_reliance import SelfReliance
from .semi_base import SemiSegmentor, rename_loss_dict, reweight_loss_dict
from .unimatch import UniMatch

__all__ = [
    'SemiSegmentor', 'UniMatch', 'SelfReliance', 'ConformalSAM', 'rename_loss_dict',
    'reweight_loss_dict'
]
