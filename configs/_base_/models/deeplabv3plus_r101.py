# DeepLabV3+ ResNet-101 as UniMatch uses it: deep stem (V1c), output stride 16, the authors'
# head (UniMatchDeepLabV3PlusHead: plain 3x3 atrous convs at dilations (6, 12, 18) plus the 1x1
# branch and image pooling, 256 channels, c1 reduced to 48, two 3x3 fusion convs, bilinear
# upsampling with align_corners=True), no auxiliary head, no dropout before the classifier.
# MMSegmentation's depthwise-separable DeepLabV3+ head instead:
#     model = dict(decode_head=dict(type='DepthwiseSeparableASPPHead', align_corners=False))
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 2),
        strides=(1, 2, 2, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='UniMatchDeepLabV3PlusHead',
        in_channels=2048,
        in_index=3,
        channels=256,
        dilations=(1, 6, 12, 18),
        c1_in_channels=256,
        c1_channels=48,
        dropout_ratio=0.0,
        num_classes=21,
        norm_cfg=norm_cfg,
        align_corners=True,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
