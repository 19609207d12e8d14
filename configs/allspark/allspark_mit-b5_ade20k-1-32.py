_base_ = [
    '../_base_/models/allspark_mit-b5.py', '../_base_/datasets/semi/ade20k_allspark.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)),
    semi_train_cfg=dict(memory_warmup_iters=6115),
    segmentor=dict(decode_head=dict(num_classes=150)))
split = 'splits/ade20k/1-32'
train_dataloader = dict(
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
# 40 epochs x ceil(19578 unlabeled / 16 per iteration); memory after 5 epochs
train_cfg = dict(max_iters=48960)
