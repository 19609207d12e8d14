# PASCAL VOC 2012, blended setting: 10582 training images with SBD's extra masks
# (SegmentationClassAug), crop 513.
_base_ = './voc_classic.py'
crop_size = (513, 513)
train_dataloader = dict(
    dataset=dict(
        data_prefix=dict(seg_map_path='VOCdevkit/VOC2012/SegmentationClassAug'),
        ann_file='splits/voc_blended/1-16/labeled.txt',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadCheckedAnnotations', num_classes=21),
            dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
            dict(type='RandomCrop', crop_size=crop_size),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackSegInputs'),
        ]))
