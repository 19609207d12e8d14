from .seem_pseudo_label_head import SEEMPseudoLabelHead

__all__ = ['SEEMPseudoLabelHead']
