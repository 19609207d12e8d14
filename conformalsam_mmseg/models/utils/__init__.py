from .cutmix import cutmix_box, cutmix_boxes

__all__ = ['cutmix_box', 'cutmix_boxes']
