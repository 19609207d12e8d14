# CPU-sized DeepLabV3+: ResNet-18 (V1c), output stride 16, plain BatchNorm (SyncBN needs CUDA),
# MMSegmentation's depthwise-separable head, which the demo and the CPU benchmarks were measured
# with (the authors' plain head: type='UniMatchDeepLabV3PlusHead', align_corners=True).
_base_ = './deeplabv3plus_r101.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18, norm_cfg=norm_cfg),
    decode_head=dict(
        type='DepthwiseSeparableASPPHead', align_corners=False,
        in_channels=512, c1_in_channels=64, channels=128, norm_cfg=norm_cfg))
