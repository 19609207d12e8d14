# CPU-sized UniMatch on CamVid (half resolution, labeled 1-4 of train, the rest unlabeled):
# 4 labeled + 4 unlabeled crops of 160 px per iteration, plus 4 new crops of the same 4
# unlabeled images as the CutMix source.
_base_ = [
    '../_base_/models/unimatch_deeplabv3plus_efficientnet-lite0.py',
    '../_base_/datasets/semi/camvid_semi.py', '../_base_/default_runtime.py',
    '../_base_/schedules/street_scenes_sgd.py'
]
crop_size = (160, 160)
# UniMatch's street-scene recipe, their Cityscapes config (the closest to CamVid): every
# pseudo-label counts (conf_thresh 0), the labeled loss mines hard pixels (OHEM, thresh 0.7,
# min_kept 15.6% of the batch's pixels, as their 200000 of two 801 px crops per GPU: 16000 of
# 4 x 160 x 160), and its optimizer (../_base_/schedules/street_scenes_sgd.py).
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)),
    semi_train_cfg=dict(conf_thresh=0.0,
                        sup_loss=dict(type='ProbOhem', thresh=0.7, min_kept=16000)))
split = 'splits/camvid/1-4'
train_dataloader = dict(
    # the CutMix source half shows the batch u's images again, newly augmented (UniMatch's)
    sampler=dict(source_repeats=[1, 2]),
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
train_cfg = dict(max_iters=2000, val_interval=500)
default_hooks = dict(checkpoint=dict(interval=500))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
