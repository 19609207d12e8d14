# ConformalSAM on PASCAL VOC: SEEM's outputs for train_aug, background = class 0.
_base_ = './conformalsam.py'
conformalsam = dict(annotator_cache='data/annotator_cache/seem_voc', background_index=0)
