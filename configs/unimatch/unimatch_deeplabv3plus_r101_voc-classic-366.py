_base_ = [
    '../_base_/models/unimatch_deeplabv3plus_r101.py', '../_base_/datasets/semi/voc_classic_semi.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (321, 321)
model = dict(data_preprocessor=dict(data_preprocessor=dict(size=crop_size)))
split = 'splits/voc_classic/366'
train_dataloader = dict(
    # the CutMix source half shows the batch u's images again, newly augmented (UniMatch's)
    sampler=dict(source_repeats=[1, 2]),
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
# 80 epochs x ceil(10216 unlabeled / 8 per iteration)
train_cfg = dict(max_iters=102160)
