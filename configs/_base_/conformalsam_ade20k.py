# ConformalSAM's parts on ADE20K (no background class): SEEM's outputs for the training images.
_base_ = './conformalsam.py'
pseudo_label_head = dict(num_classes=150, background_index=None)
annotator_cache = 'data/annotator_cache/seem_ade20k'
