# CPU-sized ConformalSAM alone on CamVid 1/8 (half resolution) with the cross-sequence annotator.
_base_ = [
    './_base_/models/selfreliance_deeplabv3plus_efficientnet-lite0.py',
    './_base_/datasets/semi/camvid_semi.py', './_base_/default_runtime.py',
    './_base_/schedules/unimatch_sgd.py', './_base_/conformalsam_camvid.py'
]
crop_size = (160, 160)
# the host: SelfReliance on DeepLabV3+ / EfficientNet-Lite0 (Stage II), at this crop
host = _base_.model
host.data_preprocessor.data_preprocessor.size = crop_size
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=host,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
split = 'splits/camvid/1-8'
# B labeled + B unlabeled per GPU: self-reliance needs no CutMix source batch.
train_dataloader = dict(
    batch_size=8,
    sampler=dict(batch_size=8, source_ratio=[4, 4]),
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt'),
        annotator_cache=_base_.annotator_cache))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
