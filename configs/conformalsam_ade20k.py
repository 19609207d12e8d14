# ConformalSAM alone on ADE20K 1/64, crop 512, 40 epochs:
# SegFormer MiT-B5; Stage I on SEEM's conformally filtered labels, Stage II self-reliance.
_base_ = [
    './_base_/models/selfreliance_segformer_mit-b5.py', './_base_/datasets/semi/ade20k_semi.py',
    './_base_/default_runtime.py', './_base_/schedules/unimatch_sgd.py',
    './_base_/conformalsam_ade20k.py'
]
crop_size = (512, 512)
# the host: SelfReliance on SegFormer MiT-B5 (Stage II), at this crop and 150 classes
host = _base_.model
host.data_preprocessor.data_preprocessor.size = crop_size
host.segmentor.decode_head.num_classes = 150
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=host,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
split = 'splits/ade20k/1-64'
# B labeled + B unlabeled per GPU: self-reliance needs no CutMix source batch.
train_dataloader = dict(
    batch_size=8,
    sampler=dict(batch_size=8, source_ratio=[4, 4]),
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt'),
        annotator_cache=_base_.annotator_cache))
train_cfg = dict(max_iters=49760)
