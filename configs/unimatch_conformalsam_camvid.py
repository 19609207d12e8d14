# CPU-sized ConformalSAM(UniMatch) on CamVid 1/8 with the cross-sequence annotator.
_base_ = [
    './unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py', './_base_/conformalsam_camvid.py'
]
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=_base_.model,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
train_dataloader = dict(dataset=dict(annotator_cache=_base_.annotator_cache))
