_base_ = [
    '../_base_/models/allspark_mit-b5.py', '../_base_/datasets/semi/voc_classic_allspark.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (513, 513)
model = dict(
    data_preprocessor=dict(data_preprocessor=dict(size=crop_size)),
    semi_train_cfg=dict(memory_warmup_iters=6385))
split = 'splits/voc_classic/366'
train_dataloader = dict(
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
# 80 epochs x ceil(10216 unlabeled / 8 per iteration); memory after 5 epochs
train_cfg = dict(max_iters=102160)
