# AllSpark on the CPU-sized DeepLabV3+ EfficientNet-Lite0 (ImageNet weights, no download), for
# comparisons where every method trains the same network: the AllSpark module sits on the
# backbone's deepest feature (320 channels, output stride 16) between the backbone and the
# DeepLabV3+ head, as it sits between MiT and the SegFormer head in the authors' model
# (./allspark_mit-b5.py). The memory length is that feature's size at the training crop:
# crop // 16 = 10 x 10 for the 160-pixel CamVid crops (set feature_size for another crop).
# BN in the backbone sees cat(labeled, unlabeled) in training, as in AllSpark's own loop.
_base_ = './unimatch_deeplabv3plus_efficientnet-lite0.py'
model = dict(
    type='AllSpark',
    segmentor=dict(
        neck=dict(
            type='AllSparkNeck', in_channels=320, num_heads=2, attn_drop=0.1,
            feature_size=(10, 10))))
