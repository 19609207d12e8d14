_base_ = [
    '../_base_/models/deeplabv3plus_r101.py', '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=150))
train_dataloader = dict(dataset=dict(ann_file='splits/ade20k/1-64/labeled.txt'))
# 40 epochs x ceil(19894 unlabeled / 16 per iteration)
train_cfg = dict(max_iters=49760)
