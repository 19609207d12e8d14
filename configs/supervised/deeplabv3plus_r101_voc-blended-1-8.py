_base_ = [
    '../_base_/models/deeplabv3plus_r101.py', '../_base_/datasets/voc_blended.py',
    '../_base_/default_runtime.py', '../_base_/schedules/unimatch_sgd.py'
]
crop_size = (513, 513)
model = dict(data_preprocessor=dict(size=crop_size))
train_dataloader = dict(dataset=dict(ann_file='splits/voc_blended/1-8/labeled.txt'))
# 80 epochs x ceil(9259 unlabeled / 8 per iteration)
train_cfg = dict(max_iters=92640)
