from .prob_ohem_cross_entropy import prob_ohem_cross_entropy
from .prob_ohem_loss import ProbOhemLoss

__all__ = ['prob_ohem_cross_entropy', 'ProbOhemLoss']
