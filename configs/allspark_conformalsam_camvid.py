# CPU-sized ConformalSAM(AllSpark) on CamVid 1/8 with the cross-sequence annotator, on the
# network of the other CamVid configs (the SegFormer MiT-B0 version, whose ImageNet weights are a
# download: host allspark/allspark_mit-b0_camvid-1-8.py).
_base_ = [
    './allspark/allspark_deeplabv3plus_effl0_camvid-1-8.py', './_base_/conformalsam_camvid.py'
]
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=_base_.model,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
train_dataloader = dict(dataset=dict(annotator_cache=_base_.annotator_cache))
