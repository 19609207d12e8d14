# UniMatch on the CPU-sized DeepLabV3+ EfficientNet-Lite0 (ImageNet weights, no download);
# semi_train_cfg keeps UniMatch's defaults (see unimatch_deeplabv3plus_r101.py).
_base_ = './deeplabv3plus_efficientnet-lite0.py'
model = dict(
    _delete_=True,
    type='UniMatch',
    segmentor={{_base_.model}},
    data_preprocessor=dict(
        type='MultiBranchDataPreprocessor',
        data_preprocessor={{_base_.data_preprocessor}}))
