# ConformalSAM's parts on PASCAL VOC: SEEM's outputs for train_aug, background = class 0.
_base_ = './conformalsam.py'
pseudo_label_head = dict(num_classes=21, background_index=0)
annotator_cache = 'data/annotator_cache/seem_voc'
