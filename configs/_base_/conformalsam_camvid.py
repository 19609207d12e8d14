# ConformalSAM's parts on CamVid (no background class), with the cross-sequence annotator
# (tools/train_camvid_annotator.py: trained on Seq05VD only, its outputs on CamVid train).
_base_ = './conformalsam.py'
pseudo_label_head = dict(num_classes=11, background_index=None)
annotator_cache = 'data/annotator_cache/camvid_cross_sequence'
