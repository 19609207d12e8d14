# The CamVid supervised baseline (labeled 1-8 of train) trained with the hosts' street-scene
# recipe: ./deeplabv3plus_effl0_camvid-1-8.py (same network, data, crop and batch) with
# UniMatch's and AllSpark's Cityscapes optimizer (../_base_/schedules/street_scenes_sgd.py:
# SGD lr 0.005, every parameter at the same rate) and their labeled loss (OHEM, thresh 0.7,
# min_kept 16000 of 4 x 160 x 160, as ../unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py).
# UniMatch or AllSpark minus this model is what their unlabeled images add under their recipe.
_base_ = [
    '../_base_/models/deeplabv3plus_efficientnet-lite0.py', '../_base_/datasets/camvid.py',
    '../_base_/default_runtime.py', '../_base_/schedules/street_scenes_sgd.py'
]
crop_size = (160, 160)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(
        num_classes=11,
        loss_decode=dict(_delete_=True, type='ProbOhemLoss', thresh=0.7, min_kept=16000)))
train_dataloader = dict(dataset=dict(ann_file='splits/camvid/1-8/labeled.txt'))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
