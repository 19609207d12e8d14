# Semi-supervised CamVid (11 classes, 255 = void) at half resolution, for CPU-sized runs.
# Labeled images: ground truth, branch 'sup'. Unlabeled images: a map of zeros instead of a label
# file (LoadDummySegMap; padding becomes 255 = UniMatch's ignore mask) and three views of ONE crop,
# 'unsup_weak', 'unsup_strong1', 'unsup_strong2'. The geometric transforms run before MultiBranch,
# so all views of an image share the crop; the branches add only colour transforms.
# The pipelines are top-level variables for inheriting configs, but mmengine fills them into
# train_dataloader when this file is read: a config that edits one re-assigns train_dataloader
# (e.g. AllSpark: sup_branch = strong_photometric + [PackSegInputs], then the datasets).
_base_ = '../camvid.py'
dataset_type = 'CamVidDataset'
data_root = 'data/'
num_classes = 11
scale = (240, 180)
crop_size = (160, 160)
split = 'splits/camvid/1-8'

# Per GPU and iteration: num_labeled labeled images, and twice as many unlabeled ones, the
# batch u and UniMatch's CutMix source batch (the segmentor splits them in halves).
num_labeled = 4
source_ratio = [num_labeled, 2 * num_labeled]
batch_size = 3 * num_labeled  # = sum(source_ratio), checked by MultiSourceSampler

branch_field = ['sup', 'unsup_weak', 'unsup_strong1', 'unsup_strong2']
# UniMatch's strong colour augmentation (torchvision semantics; images are BGR uint8).
strong_photometric = [
    dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25, prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.299)),  # luma weights, B G R
    dict(type='GaussianBlur', sigma_range=(0.1, 2.0), prob=0.5),
]
sup_branch = [dict(type='PackSegInputs')]
unsup_weak_branch = [dict(type='PackSegInputs')]
unsup_strong_branch = strong_photometric + [dict(type='PackSegInputs')]
# The weak view: rescale U(0.5, 2.0) of the image's own size, crop, flip. cat_max_ratio stays
# 1.0: UniMatch has no such test, and a dummy map would always fail it.
weak_geometric = [
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
]
labeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
] + weak_geometric + [
    dict(type='MultiBranch', branch_field=branch_field, sup=sup_branch),
]
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadDummySegMap'),
] + weak_geometric + [
    dict(type='MultiBranch', branch_field=branch_field, unsup_weak=unsup_weak_branch,
         unsup_strong1=unsup_strong_branch, unsup_strong2=unsup_strong_branch),
]
labeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    data_prefix=dict(img_path='camvid/images/train', seg_map_path='camvid/labels/train'),
    ann_file=split + '/labeled.txt',
    pipeline=labeled_pipeline)
# No seg_map_path: the label files of unlabeled images are never read.
unlabeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    data_prefix=dict(img_path='camvid/images/train'),
    ann_file=split + '/unlabeled.txt',
    pipeline=unlabeled_pipeline)
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size, source_ratio=source_ratio),
    dataset=dict(type='SemiDataset', labeled=labeled_dataset, unlabeled=unlabeled_dataset))
