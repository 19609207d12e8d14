_base_ = [
    '../_base_/models/unimatch_deeplabv3plus_r101.py', '../_base_/datasets/semi/ade20k_semi.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(data_preprocessor=dict(size=crop_size)), segmentor=dict(decode_head=dict(num_classes=150)))
split = 'splits/ade20k/1-32'
train_dataloader = dict(
    # the CutMix source half shows the batch u's images again, newly augmented (UniMatch's)
    sampler=dict(source_repeats=[1, 2]),
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
# 40 epochs x ceil(19578 unlabeled / 16 per iteration)
train_cfg = dict(max_iters=48960)
