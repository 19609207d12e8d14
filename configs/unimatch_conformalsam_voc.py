# ConformalSAM(UniMatch) on VOC classic 366: UniMatch's config wrapped by ConformalSAM.
_base_ = [
    './unimatch/unimatch_deeplabv3plus_r101_voc-classic-366.py', './_base_/conformalsam_voc.py'
]
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=_base_.model,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
train_dataloader = dict(dataset=dict(annotator_cache=_base_.annotator_cache))
