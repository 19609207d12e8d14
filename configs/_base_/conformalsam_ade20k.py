# ConformalSAM on ADE20K (no background class): SEEM's outputs for the training images.
_base_ = './conformalsam.py'
conformalsam = dict(annotator_cache='data/annotator_cache/seem_ade20k', background_index=None)
