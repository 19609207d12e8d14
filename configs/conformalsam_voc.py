# ConformalSAM alone on VOC classic 366, crop 513 (AllSpark's recipe), 80 epochs:
# SegFormer MiT-B5; Stage I on SEEM's conformally filtered labels, Stage II self-reliance.
_base_ = [
    './_base_/models/selfreliance_segformer_mit-b5.py', './_base_/datasets/semi/voc_blended_semi.py',
    './_base_/default_runtime.py', './_base_/schedules/unimatch_sgd.py',
    './_base_/conformalsam_voc.py'
]
crop_size = (513, 513)
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)),
    segmentor=dict(decode_head=dict(num_classes=21)))
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
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
train_cfg = dict(max_iters=102160)
