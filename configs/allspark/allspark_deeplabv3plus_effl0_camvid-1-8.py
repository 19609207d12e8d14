# CPU-sized AllSpark on CamVid (half resolution, labeled 1-8 of train) with the network of the
# other CamVid configs (DeepLabV3+ EfficientNet-Lite0): 4 labeled + 4 unlabeled crops of 160 px.
_base_ = [
    '../_base_/models/allspark_deeplabv3plus_efficientnet-lite0.py',
    '../_base_/datasets/semi/camvid_allspark.py', '../_base_/default_runtime.py',
    '../_base_/schedules/street_scenes_sgd.py'
]
crop_size = (160, 160)
split = 'splits/camvid/1-8'
# AllSpark's street-scene recipe, their cityscapes_allspark.yaml (the closest to CamVid): the
# labeled loss mines hard pixels (OHEM, thresh 0.7, min_kept 15.6% of the batch's pixels, as
# their 200000 of two 801 px crops per GPU: 16000 of 4 x 160 x 160), and its optimizer
# (../_base_/schedules/street_scenes_sgd.py).
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)),
    # 5 epochs of the unlabeled images, 4 per iteration, scaled to this 2000-iteration schedule
    # as in ./allspark_mit-b0_camvid-1-8.py.
    semi_train_cfg=dict(memory_warmup_iters=400,
                        sup_loss=dict(type='ProbOhem', thresh=0.7, min_kept=16000)))
train_dataloader = dict(
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
