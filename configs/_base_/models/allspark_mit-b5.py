# AllSpark on SegFormer MiT-B5, as the authors: MiT-B5 (embed_dims 64 -> stage widths
# 64/128/320/512, layers [3, 6, 40, 3]) pretrained on ImageNet (mmseg's converted weights), the
# AllSpark module on the deepest feature (AllSparkNeck: 512 channels, 2 heads, attention dropout
# 0.1), the authors' SegFormer MLP head (SegformerMLPHead: one Linear per level) with embedding
# 768, SyncBN. mmseg's conv-BN-ReLU SegformerHead is an option: decode_head=dict(type=
# 'SegformerHead', ...). Batches are prepared branch by branch
# ('sup', 'unsup_weak') by the preprocessor of ./deeplabv3plus_r101.py, wrapped as in
# ./unimatch_deeplabv3plus_r101.py.
#
# One place per setting: the neck takes num_classes from decode_head.num_classes and the memory
# length from the data preprocessor's size (crop 513 -> deepest feature 17 x 17 = 289). A config
# for another crop sets model.data_preprocessor.data_preprocessor.size.
# AllSpark needs equal labeled and unlabeled batches: the sampler's source_ratio = [B, B]
# (checked by conformalsam_mmseg.models.segmentors.allspark.check_equal_batches; a method
# config may also pass it as semi_train_cfg.source_ratio, checked when the model is built).
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(513, 513))
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b5_20220624-658746d9.pth'  # noqa
model = dict(
    type='AllSpark',
    data_preprocessor=dict(
        type='MultiBranchDataPreprocessor', data_preprocessor=data_preprocessor),
    segmentor=dict(
        type='EncoderDecoder',
        data_preprocessor=data_preprocessor,
        pretrained=None,
        backbone=dict(
            type='MixVisionTransformer',
            in_channels=3,
            embed_dims=64,
            num_stages=4,
            num_layers=[3, 6, 40, 3],
            num_heads=[1, 2, 5, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.1,
            init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
        neck=dict(
            type='AllSparkNeck',
            in_channels=512,
            num_heads=2,
            attn_drop=0.1),
        decode_head=dict(
            type='SegformerMLPHead',
            in_channels=[64, 128, 320, 512],
            in_index=[0, 1, 2, 3],
            channels=768,
            dropout_ratio=0.1,
            num_classes=21,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                avg_non_ignore=True)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole')),
    semi_train_cfg=dict(
        # 5 epochs of VOC classic 1464 (9118 unlabeled images, 2 per GPU on 4 GPUs):
        # memory_warmup_iters(5, 9118, 2, 4) = 5 * (ceil(9118 / 4) // 2) = 5700. Other splits:
        # 5 * (ceil(num_unlabeled / num_gpus) // unlabeled_per_gpu).
        memory_warmup_iters=5700,
        loss_weights=dict(x=0.5, u=0.5)),
    semi_test_cfg=dict(predict_on='student'))
