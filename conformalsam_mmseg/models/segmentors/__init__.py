from .allspark import AllSpark, check_equal_batches, memory_warmup_iters
from .conformalsam import ConformalSAM
from .self_reliance import SelfReliance
from .semi_base import SemiSegmentor, rename_loss_dict, reweight_loss_dict
from .unimatch import UniMatch

__all__ = [
    'SemiSegmentor', 'UniMatch', 'AllSpark', 'SelfReliance', 'ConformalSAM', 'check_equal_batches',
    'memory_warmup_iters', 'rename_loss_dict', 'reweight_loss_dict'
]
