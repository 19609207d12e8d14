# ConformalSAM alone on VOC classic 366, crop 513 (AllSpark's recipe), 80 epochs:
# SegFormer MiT-B5; Stage I on SEEM's conformally filtered labels, Stage II self-reliance.
_base_ = [
    './_base_/models/selfreliance_segformer_mit-b5.py', './_base_/datasets/semi/voc_blended_semi.py',
    './_base_/default_runtime.py', './_base_/schedules/unimatch_sgd.py',
    './_base_/conformalsam_voc.py'
]
crop_size = (513, 513)
# the host: SelfReliance on SegFormer MiT-B5 (Stage II), at this crop and 21 classes
host = _base_.model
host.data_preprocessor.data_preprocessor.size = crop_size
host.segmentor.decode_head.num_classes = 21
model = dict(
    _delete_=True,
    type='ConformalSAM',
    host=host,
    pseudo_label_head=_base_.pseudo_label_head,
    self_reliance_at=0.75)  # Stage II from 75% of the iterations; None: Stage I only
split = 'splits/voc_classic/366'
# B labeled + B unlabeled per GPU: self-reliance needs no CutMix source batch.
train_dataloader = dict(
    batch_size=4,
    sampler=dict(batch_size=4, source_ratio=[2, 2]),
    dataset=dict(
        # the classic split's fine masks, with the blended setting's 513 crop (AllSpark's)
        labeled=dict(
            ann_file=split + '/labeled.txt',
            data_prefix=dict(seg_map_path='VOCdevkit/VOC2012/SegmentationClass')),
        unlabeled=dict(ann_file=split + '/unlabeled.txt'),
        annotator_cache=_base_.annotator_cache))
train_cfg = dict(max_iters=102160)
