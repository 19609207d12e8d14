# CPU-sized DeepLabV3+: ResNet-18 (V1c), output stride 16, plain BatchNorm (SyncBN needs CUDA).
_base_ = './deeplabv3plus_r101.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=512, c1_in_channels=64, channels=128, norm_cfg=norm_cfg))
