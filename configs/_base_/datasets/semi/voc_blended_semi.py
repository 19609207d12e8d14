# Semi-supervised PASCAL VOC 2012, blended setting (10582 training ids with SBD's extra masks in
# SegmentationClassAug; labeled 1/16, 1/8, 1/4 of them, the rest unlabeled), crop 513,
# UniMatch's data recipe. Same structure as ./voc_classic_semi.py: labeled images -> branch
# 'sup'; unlabeled images -> a map of zeros (LoadDummySegMap; padding becomes 255 = the ignore
# mask) and three views of ONE crop, 'unsup_weak', 'unsup_strong1', 'unsup_strong2'.
# A config that edits a pipeline variable re-assigns train_dataloader (mmengine fills the
# variables in when this file is read).
_base_ = '../voc_blended.py'
dataset_type = 'PascalVOCDataset'
data_root = 'data/'
num_classes = 21
crop_size = (513, 513)
split = 'splits/voc_blended/1-16'
img_path = 'VOCdevkit/VOC2012/JPEGImages'
seg_map_path = 'VOCdevkit/VOC2012/SegmentationClassAug'

# Per GPU and iteration: 2 labeled + 4 unlabeled images, the unlabeled half the batch u and
# half UniMatch's CutMix source batch (the segmentor splits them). The authors' 8 labeled +
# 8 unlabeled (+ 8 CutMix sources) = 4 GPUs x (2 + 2 + 2).
num_labeled = 2
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
    data_prefix=dict(img_path=img_path, seg_map_path=seg_map_path),
    ann_file=split + '/labeled.txt',
    pipeline=labeled_pipeline)
# No seg_map_path: the label files of unlabeled images are never read.
unlabeled_dataset = dict(
    type=dataset_type,
    data_root=data_root,
    data_prefix=dict(img_path=img_path),
    ann_file=split + '/unlabeled.txt',
    pipeline=unlabeled_pipeline)
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='MultiSourceSampler', batch_size=batch_size, source_ratio=source_ratio),
    dataset=dict(type='SemiDataset', labeled=labeled_dataset, unlabeled=unlabeled_dataset))
