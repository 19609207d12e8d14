from .cutmix import cutmix_box, cutmix_boxes
from .feature_levels import levels_read_by

__all__ = ['cutmix_box', 'cutmix_boxes', 'levels_read_by']
