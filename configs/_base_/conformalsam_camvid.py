# ConformalSAM on CamVid (no background class) with the cross-sequence annotator
# (tools/train_camvid_annotator.py: trained on Seq05VD only, its outputs on CamVid train).
_base_ = './conformalsam.py'
conformalsam = dict(annotator_cache='data/annotator_cache/camvid_cross_sequence',
                    background_index=None)
