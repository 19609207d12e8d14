allspark_branches = [
    'sup',
    'unsup_weak',
]
allspark_geometric = [
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(ratio_range=(
        0.5,
        2.0,
    ), type='RandomRescale'),
    dict(cat_max_ratio=1.0, crop_size=(
        160,
        160,
    ), type='RandomCrop'),
    dict(pad_val=dict(img=0, seg=255), size=(
        160,
        160,
    ), type='PadSegFields'),
    dict(prob=0.5, type='RandomFlip'),
]
allspark_strong_labeled = [
    dict(
        brightness=0.5,
        contrast=0.5,
        hue=0.25,
        prob=0.8,
        saturation=0.5,
        type='ColorJitter'),
    dict(
        channel_weights=(
            0.114,
            0.587,
            0.299,
        ),
        keep_channels=True,
        prob=0.2,
        type='RandomGrayscale'),
    dict(prob=0.5, sigma_range=(
        0.1,
        2.0,
    ), type='GaussianBlur'),
    dict(type='PackSegInputs'),
]
annotator_cache = 'data/annotator_cache/camvid_cross_sequence'
batch_size = 12
branch_field = [
    'sup',
    'unsup_weak',
    'unsup_strong1',
    'unsup_strong2',
]
crop_size = (
    160,
    160,
)
custom_hooks = [
    dict(holdout_folds=5, interval=None, type='ConformalCalibrationHook'),
    dict(type='SelfRelianceHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'conformalsam_mmseg',
    ])
data_preprocessor = dict(
    bgr_to_rgb=True,
    mean=[
        123.675,
        116.28,
        103.53,
    ],
    pad_val=0,
    seg_pad_val=255,
    std=[
        58.395,
        57.12,
        57.375,
    ],
    type='SegDataPreProcessor')
data_root = 'data/'
dataset_type = 'CamVidDataset'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False,
        interval=250,
        max_keep_ckpts=1,
        rule='greater',
        save_best='mIoU',
        type='CheckpointHook'),
    logger=dict(interval=50, log_metric_by_epoch=False, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'),
    visualization=dict(type='SegVisualizationHook'))
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    dist_cfg=dict(backend='gloo'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
labeled_dataset = dict(
    ann_file='splits/camvid/1-8/labeled.txt',
    data_prefix=dict(
        img_path='camvid/images/train', seg_map_path='camvid/labels/train'),
    data_root='data/',
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(num_classes=11, type='LoadCheckedAnnotations'),
        dict(keep_ratio=True, scale=(
            240,
            180,
        ), type='Resize'),
        dict(ratio_range=(
            0.5,
            2.0,
        ), type='RandomRescale'),
        dict(cat_max_ratio=1.0, crop_size=(
            160,
            160,
        ), type='RandomCrop'),
        dict(prob=0.5, type='RandomFlip'),
        dict(
            branch_field=[
                'sup',
                'unsup_weak',
                'unsup_strong1',
                'unsup_strong2',
            ],
            sup=[
                dict(type='PackSegInputs'),
            ],
            type='MultiBranch'),
    ],
    type='CamVidDataset')
labeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(num_classes=11, type='LoadCheckedAnnotations'),
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(ratio_range=(
        0.5,
        2.0,
    ), type='RandomRescale'),
    dict(cat_max_ratio=1.0, crop_size=(
        160,
        160,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
    dict(
        branch_field=[
            'sup',
            'unsup_weak',
            'unsup_strong1',
            'unsup_strong2',
        ],
        sup=[
            dict(type='PackSegInputs'),
        ],
        type='MultiBranch'),
]
launcher = 'none'
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=False)
model = dict(
    host=dict(
        data_preprocessor=dict(
            data_preprocessor=dict(
                bgr_to_rgb=True,
                mean=[
                    123.675,
                    116.28,
                    103.53,
                ],
                pad_val=0,
                seg_pad_val=255,
                size=(
                    160,
                    160,
                ),
                std=[
                    58.395,
                    57.12,
                    57.375,
                ],
                type='SegDataPreProcessor'),
            type='MultiBranchDataPreprocessor'),
        segmentor=dict(
            backbone=dict(
                bn_momentum=0.1,
                frozen_stages=-1,
                norm_eval=False,
                out_indices=(
                    0,
                    1,
                    2,
                    3,
                ),
                output_stride=16,
                pretrained=True,
                type='EfficientNetLite0'),
            data_preprocessor=dict(
                bgr_to_rgb=True,
                mean=[
                    123.675,
                    116.28,
                    103.53,
                ],
                pad_val=0,
                seg_pad_val=255,
                std=[
                    58.395,
                    57.12,
                    57.375,
                ],
                type='SegDataPreProcessor'),
            decode_head=dict(
                align_corners=False,
                c1_channels=48,
                c1_in_channels=24,
                channels=128,
                dilations=(
                    1,
                    6,
                    12,
                    18,
                ),
                dropout_ratio=0.0,
                in_channels=320,
                in_index=3,
                loss_decode=dict(
                    avg_non_ignore=True,
                    loss_weight=1.0,
                    type='CrossEntropyLoss',
                    use_sigmoid=False),
                norm_cfg=dict(requires_grad=True, type='BN'),
                num_classes=11,
                type='DepthwiseSeparableASPPHead'),
            neck=dict(
                attn_drop=0.1,
                feature_size=(
                    10,
                    10,
                ),
                in_channels=320,
                num_heads=2,
                type='AllSparkNeck'),
            test_cfg=dict(mode='whole'),
            train_cfg=dict(),
            type='EncoderDecoder'),
        semi_train_cfg=dict(
            memory_warmup_iters=350,
            sup_loss=dict(min_kept=16000, thresh=0.7, type='ProbOhem')),
        type='AllSpark'),
    pseudo_label_head=dict(
        alpha=0.05,
        background_index=None,
        confidence_threshold=None,
        filter='conformal',
        mode='pixel',
        num_classes=11,
        risk_cfg=dict(
            delta=0.1,
            fallback='pooled',
            risk='false_label_rate',
            target_error=0.05),
        rule='foreground_first',
        score='lac',
        type='AnnotatorPseudoLabelHead'),
    self_reliance_at=0.75,
    type='ConformalSAM')
norm_cfg = dict(requires_grad=True, type='BN')
num_classes = 11
num_labeled = 4
optim_wrapper = dict(
    clip_grad=None,
    optimizer=dict(lr=0.005, momentum=0.9, type='SGD', weight_decay=0.0001),
    paramwise_cfg=dict(
        custom_keys=dict(
            auxiliary_head=dict(lr_mult=1.0),
            decode_head=dict(lr_mult=1.0),
            neck=dict(lr_mult=1.0))),
    type='OptimWrapper')
optimizer = dict(lr=0.005, momentum=0.9, type='SGD', weight_decay=0.0001)
param_scheduler = [
    dict(begin=0, by_epoch=False, eta_min=0.0, power=0.9, type='PolyLR'),
]
pseudo_label_head = dict(
    alpha=0.05,
    background_index=None,
    confidence_threshold=None,
    filter='conformal',
    mode='pixel',
    num_classes=11,
    risk_cfg=dict(
        delta=0.1,
        fallback='pooled',
        risk='false_label_rate',
        target_error=0.05),
    rule='foreground_first',
    score='lac',
    type='AnnotatorPseudoLabelHead')
randomness = dict(seed=2)
resume = False
scale = (
    240,
    180,
)
source_ratio = [
    4,
    8,
]
split = 'splits/camvid/1-8'
strong_photometric = [
    dict(
        brightness=0.5,
        contrast=0.5,
        hue=0.25,
        prob=0.8,
        saturation=0.5,
        type='ColorJitter'),
    dict(
        channel_weights=(
            0.114,
            0.587,
            0.299,
        ),
        keep_channels=True,
        prob=0.2,
        type='RandomGrayscale'),
    dict(prob=0.5, sigma_range=(
        0.1,
        2.0,
    ), type='GaussianBlur'),
]
sup_branch = [
    dict(type='PackSegInputs'),
]
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        data_prefix=dict(
            img_path='camvid/images/val', seg_map_path='camvid/labels/val'),
        data_root='data/',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                240,
                180,
            ), type='Resize'),
            dict(num_classes=11, type='LoadCheckedAnnotations'),
            dict(type='PackSegInputs'),
        ],
        type='CamVidDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(num_classes=11, type='LoadCheckedAnnotations'),
    dict(type='PackSegInputs'),
]
train_cfg = dict(max_iters=1750, type='IterBasedTrainLoop', val_interval=1750)
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        annotator_cache='data/annotator_cache/camvid_cross_sequence_full',
        labeled=dict(
            ann_file='splits/camvid/1-8/labeled.txt',
            data_prefix=dict(
                img_path='camvid/images/train',
                seg_map_path='camvid/labels/train'),
            data_root='data/',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(num_classes=11, type='LoadCheckedAnnotations'),
                dict(keep_ratio=True, scale=(
                    240,
                    180,
                ), type='Resize'),
                dict(ratio_range=(
                    0.5,
                    2.0,
                ), type='RandomRescale'),
                dict(
                    cat_max_ratio=1.0,
                    crop_size=(
                        160,
                        160,
                    ),
                    type='RandomCrop'),
                dict(
                    pad_val=dict(img=0, seg=255),
                    size=(
                        160,
                        160,
                    ),
                    type='PadSegFields'),
                dict(prob=0.5, type='RandomFlip'),
                dict(
                    branch_field=[
                        'sup',
                        'unsup_weak',
                    ],
                    sup=[
                        dict(
                            brightness=0.5,
                            contrast=0.5,
                            hue=0.25,
                            prob=0.8,
                            saturation=0.5,
                            type='ColorJitter'),
                        dict(
                            channel_weights=(
                                0.114,
                                0.587,
                                0.299,
                            ),
                            keep_channels=True,
                            prob=0.2,
                            type='RandomGrayscale'),
                        dict(
                            prob=0.5,
                            sigma_range=(
                                0.1,
                                2.0,
                            ),
                            type='GaussianBlur'),
                        dict(type='PackSegInputs'),
                    ],
                    type='MultiBranch'),
            ],
            type='CamVidDataset'),
        type='SemiDataset',
        unlabeled=dict(
            ann_file='splits/camvid/1-8/unlabeled.txt',
            data_prefix=dict(img_path='camvid/images/train'),
            data_root='data/',
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadDummySegMap'),
                dict(keep_ratio=True, scale=(
                    240,
                    180,
                ), type='Resize'),
                dict(ratio_range=(
                    0.5,
                    2.0,
                ), type='RandomRescale'),
                dict(
                    cat_max_ratio=1.0,
                    crop_size=(
                        160,
                        160,
                    ),
                    type='RandomCrop'),
                dict(
                    pad_val=dict(img=0, seg=255),
                    size=(
                        160,
                        160,
                    ),
                    type='PadSegFields'),
                dict(prob=0.5, type='RandomFlip'),
                dict(
                    branch_field=[
                        'sup',
                        'unsup_weak',
                    ],
                    type='MultiBranch',
                    unsup_weak=[
                        dict(type='PackSegInputs'),
                    ]),
            ],
            type='CamVidDataset')),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(
        batch_size=8, source_ratio=[
            4,
            4,
        ], type='MultiSourceSampler'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(num_classes=11, type='LoadCheckedAnnotations'),
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(ratio_range=(
        0.5,
        2.0,
    ), type='RandomRescale'),
    dict(crop_size=(
        160,
        160,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PackSegInputs'),
]
tta_model = dict(type='SegTTAModel')
unlabeled_dataset = dict(
    ann_file='splits/camvid/1-8/unlabeled.txt',
    data_prefix=dict(img_path='camvid/images/train'),
    data_root='data/',
    pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadDummySegMap'),
        dict(keep_ratio=True, scale=(
            240,
            180,
        ), type='Resize'),
        dict(ratio_range=(
            0.5,
            2.0,
        ), type='RandomRescale'),
        dict(cat_max_ratio=1.0, crop_size=(
            160,
            160,
        ), type='RandomCrop'),
        dict(prob=0.5, type='RandomFlip'),
        dict(
            branch_field=[
                'sup',
                'unsup_weak',
                'unsup_strong1',
                'unsup_strong2',
            ],
            type='MultiBranch',
            unsup_strong1=[
                dict(
                    brightness=0.5,
                    contrast=0.5,
                    hue=0.25,
                    prob=0.8,
                    saturation=0.5,
                    type='ColorJitter'),
                dict(
                    channel_weights=(
                        0.114,
                        0.587,
                        0.299,
                    ),
                    keep_channels=True,
                    prob=0.2,
                    type='RandomGrayscale'),
                dict(prob=0.5, sigma_range=(
                    0.1,
                    2.0,
                ), type='GaussianBlur'),
                dict(type='PackSegInputs'),
            ],
            unsup_strong2=[
                dict(
                    brightness=0.5,
                    contrast=0.5,
                    hue=0.25,
                    prob=0.8,
                    saturation=0.5,
                    type='ColorJitter'),
                dict(
                    channel_weights=(
                        0.114,
                        0.587,
                        0.299,
                    ),
                    keep_channels=True,
                    prob=0.2,
                    type='RandomGrayscale'),
                dict(prob=0.5, sigma_range=(
                    0.1,
                    2.0,
                ), type='GaussianBlur'),
                dict(type='PackSegInputs'),
            ],
            unsup_weak=[
                dict(type='PackSegInputs'),
            ]),
    ],
    type='CamVidDataset')
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDummySegMap'),
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(ratio_range=(
        0.5,
        2.0,
    ), type='RandomRescale'),
    dict(cat_max_ratio=1.0, crop_size=(
        160,
        160,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
    dict(
        branch_field=[
            'sup',
            'unsup_weak',
            'unsup_strong1',
            'unsup_strong2',
        ],
        type='MultiBranch',
        unsup_strong1=[
            dict(
                brightness=0.5,
                contrast=0.5,
                hue=0.25,
                prob=0.8,
                saturation=0.5,
                type='ColorJitter'),
            dict(
                channel_weights=(
                    0.114,
                    0.587,
                    0.299,
                ),
                keep_channels=True,
                prob=0.2,
                type='RandomGrayscale'),
            dict(prob=0.5, sigma_range=(
                0.1,
                2.0,
            ), type='GaussianBlur'),
            dict(type='PackSegInputs'),
        ],
        unsup_strong2=[
            dict(
                brightness=0.5,
                contrast=0.5,
                hue=0.25,
                prob=0.8,
                saturation=0.5,
                type='ColorJitter'),
            dict(
                channel_weights=(
                    0.114,
                    0.587,
                    0.299,
                ),
                keep_channels=True,
                prob=0.2,
                type='RandomGrayscale'),
            dict(prob=0.5, sigma_range=(
                0.1,
                2.0,
            ), type='GaussianBlur'),
            dict(type='PackSegInputs'),
        ],
        unsup_weak=[
            dict(type='PackSegInputs'),
        ]),
]
unsup_strong_branch = [
    dict(
        brightness=0.5,
        contrast=0.5,
        hue=0.25,
        prob=0.8,
        saturation=0.5,
        type='ColorJitter'),
    dict(
        channel_weights=(
            0.114,
            0.587,
            0.299,
        ),
        keep_channels=True,
        prob=0.2,
        type='RandomGrayscale'),
    dict(prob=0.5, sigma_range=(
        0.1,
        2.0,
    ), type='GaussianBlur'),
    dict(type='PackSegInputs'),
]
unsup_weak_branch = [
    dict(type='PackSegInputs'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        ann_file='splits/camvid/selection.txt',
        data_prefix=dict(
            img_path='camvid/images/test', seg_map_path='camvid/labels/test'),
        data_root='data/',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                240,
                180,
            ), type='Resize'),
            dict(num_classes=11, type='LoadCheckedAnnotations'),
            dict(type='PackSegInputs'),
        ],
        type='CamVidDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
vis_backends = [
    dict(type='LocalVisBackend'),
]
visualizer = dict(
    name='visualizer',
    type='SegLocalVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
weak_geometric = [
    dict(keep_ratio=True, scale=(
        240,
        180,
    ), type='Resize'),
    dict(ratio_range=(
        0.5,
        2.0,
    ), type='RandomRescale'),
    dict(cat_max_ratio=1.0, crop_size=(
        160,
        160,
    ), type='RandomCrop'),
    dict(prob=0.5, type='RandomFlip'),
]
work_dir = '/work/main/work_dirs/camvid_benchmark/1-8/seed2/strong/allspark_conformalsam'
