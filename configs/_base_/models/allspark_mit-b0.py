# CPU-sized AllSpark: SegFormer MiT-B0 (embed_dims 32 -> stage widths 32/64/160/256, 2 layers per
# stage; LayerNorm throughout the backbone) with the AllSpark module on its 256-channel deepest
# feature, the SegFormer head with embedding 256 and plain BN (SyncBN needs CUDA), CamVid's 11
# classes, crop 160 (deepest feature 5 x 5). ImageNet-pretrained MiT-B0 from mmseg (a download;
# set model.segmentor.backbone.init_cfg=None where there is no network).
_base_ = './allspark_mit-b5.py'
norm_cfg = dict(type='BN', requires_grad=True)
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b0_20220624-7e0fe6dd.pth'  # noqa
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=(160, 160))),
    segmentor=dict(
        data_preprocessor=dict(size=(160, 160)),
        backbone=dict(
            embed_dims=32,
            num_layers=[2, 2, 2, 2],
            init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
        neck=dict(in_channels=256),
        decode_head=dict(
            in_channels=[32, 64, 160, 256], channels=256, num_classes=11, norm_cfg=norm_cfg)),
    semi_train_cfg=dict(
        # 5 epochs of CamVid 1/8 (321 unlabeled images) with 4 unlabeled images per iteration
        # on one process: 5 * (321 // 4) = 400.
        memory_warmup_iters=400))
