# CPU-sized supervised baseline on CamVid (half resolution, labeled 1-4 of train):
# DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0 (weights installed with the package).
_base_ = [
    '../_base_/models/deeplabv3plus_efficientnet-lite0.py', '../_base_/datasets/camvid.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (160, 160)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=11))
train_dataloader = dict(dataset=dict(ann_file='splits/camvid/1-4/labeled.txt'))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
