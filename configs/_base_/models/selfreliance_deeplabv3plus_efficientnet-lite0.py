# CPU-sized network for ConformalSAM alone: DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0
# (weights installed with the package; MiT weights would need a download), SelfReliance in
# Stage II with the default exponentially decaying loss weight.
_base_ = './deeplabv3plus_efficientnet-lite0.py'
model = dict(
    _delete_=True,
    type='SelfReliance',
    segmentor={{_base_.model}},
    data_preprocessor=dict(
        type='MultiBranchDataPreprocessor',
        data_preprocessor={{_base_.data_preprocessor}}),
    semi_train_cfg=dict(conf_thresh=0.95))
