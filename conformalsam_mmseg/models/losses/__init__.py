from .prob_ohem_cross_entropy import prob_ohem_cross_entropy

__all__ = ['prob_ohem_cross_entropy']
