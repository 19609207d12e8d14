# CPU-sized AllSpark on CamVid (half resolution, labeled 1-4 of train): SegFormer MiT-B0 with the
# AllSpark module, 4 labeled + 4 unlabeled crops of 160 px per iteration. The MiT-B0 ImageNet
# weights are downloaded by mmengine on first use.
_base_ = [
    '../_base_/models/allspark_mit-b0.py', '../_base_/datasets/semi/camvid_allspark.py',
    '../_base_/default_runtime.py', '../_base_/schedules/street_scenes_sgd.py'
]
# AllSpark's street-scene recipe, their cityscapes_allspark.yaml (the closest to CamVid): the
# labeled loss mines hard pixels (OHEM, thresh 0.7, min_kept 15.6% of the batch's pixels, as
# their 200000 of two 801 px crops per GPU: 16000 of 4 x 160 x 160), and its optimizer
# (../_base_/schedules/street_scenes_sgd.py).
model = dict(semi_train_cfg=dict(
    sup_loss=dict(type='ProbOhem', thresh=0.7, min_kept=16000)))
split = 'splits/camvid/1-4'
train_dataloader = dict(
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
