# The demo's ConformalSAM run: the narrow DeepLabV3+ of ./deeplabv3plus_r18-tiny_shapes.py,
# 1/8 of the generated shapes labeled, the rest labeled by the SimulatedAnnotator (ground truth
# plus realistic errors; a stand-in for SEEM, which is not available offline), calibrated by
# conformal prediction (Stage I), then self-reliance (Stage II). tools/demo.py fills data_root.
_base_ = ['./deeplabv3plus_r18-tiny_shapes.py', '../_base_/conformalsam.py']
data_root = 'work_dirs/demo/data'
num_classes = 4
crop_size = (96, 96)
model = dict(
    _delete_=True,
    type='ConformalSAM',
    # the host: SelfReliance (Stage II) on the narrow DeepLabV3+
    host=dict(
        type='SelfReliance',
        segmentor=_base_.model,
        data_preprocessor=dict(
            type='MultiBranchDataPreprocessor',
            data_preprocessor=_base_.model.data_preprocessor),
        semi_train_cfg=dict(conf_thresh=0.95)),
    pseudo_label_head=dict(_base_.pseudo_label_head, num_classes=num_classes,
                           background_index=0),
    self_reliance_at=0.75)
branch_field = ['sup', 'unsup_weak']
geometric = [
    dict(type='RandomRescale', ratio_range=(0.75, 1.5)),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
]
labeled_dataset = dict(
    type='SyntheticShapesDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/train', seg_map_path='labels/train'),
    ann_file='splits/labeled.txt',
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    ] + geometric + [
        dict(type='MultiBranch', branch_field=branch_field, sup=[dict(type='PackSegInputs')])
    ])
unlabeled_dataset = dict(
    type='SyntheticShapesDataset',
    data_root=data_root,
    data_prefix=dict(img_path='images/train'),
    ann_file='splits/unlabeled.txt',
    pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadDummySegMap')] + geometric + [
        dict(type='MultiBranch', branch_field=branch_field,
             unsup_weak=[dict(type='PackSegInputs')])
    ])
train_dataloader = dict(
    _delete_=True,
    batch_size=8,
    num_workers=0,
    sampler=dict(type='MultiSourceSampler', batch_size=8, source_ratio=[4, 4]),
    dataset=dict(type='SemiDataset', labeled=labeled_dataset, unlabeled=unlabeled_dataset,
                 annotator_cache=data_root + '/annotator'))
custom_hooks = [
    dict(type='ConformalCalibrationHook', holdout_folds=4, interval=None),
    dict(type='SelfRelianceHook'),
]
