# PASCAL VOC 2012, classic setting: the 1464 finely annotated training images, crop 321.
# Labeled ann_files come from tools/make_splits.py (see docs/datasets.md).
dataset_type = 'PascalVOCDataset'
data_root = 'data/'
num_classes = 21
crop_size = (321, 321)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='PackSegInputs'),
]
seg_map_path = 'VOCdevkit/VOC2012/SegmentationClass'
train_dataloader = dict(
    batch_size=2,  # per GPU; the authors' 8 = 4 GPUs x 2
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='VOCdevkit/VOC2012/JPEGImages', seg_map_path=seg_map_path),
        ann_file='splits/voc_classic/1464/labeled.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='VOCdevkit/VOC2012/JPEGImages',
            seg_map_path='VOCdevkit/VOC2012/SegmentationClass'),
        ann_file='VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
