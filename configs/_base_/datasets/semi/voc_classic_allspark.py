# AllSpark's data on top of ./voc_classic_semi.py (with AllSpark's crop 513): equal batches
# (2 + 2 per GPU), labeled crops with the strong colour augmentation ('sup'), unlabeled
# crops with the weak view only ('unsup_weak'), no CutMix source batch.
_base_ = './voc_classic_semi.py'
allspark_branches = ['sup', 'unsup_weak']
allspark_geometric = [
    dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=(513, 513), cat_max_ratio=1.0),
    # As the authors: a crop smaller than crop_size is padded black before normalisation
    # (labels with 255; the unlabeled dummy map marks the padding 255), then flipped.
    dict(type='PadSegFields', size=(513, 513), pad_val=dict(img=0, seg=255)),
    dict(type='RandomFlip', prob=0.5),
]
# AllSpark gives labeled images UniMatch's strong colour augmentation.
allspark_strong_labeled = [
    dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25, prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.299)),
    dict(type='GaussianBlur', sigma_range=(0.1, 2.0), prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    sampler=dict(batch_size=4, source_ratio=[2, 2]),
    dataset=dict(
        labeled=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadCheckedAnnotations', num_classes=21),
        ] + allspark_geometric + [
            dict(type='MultiBranch', branch_field=allspark_branches,
                 sup=allspark_strong_labeled),
        ]),
        unlabeled=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadDummySegMap'),
        ] + allspark_geometric + [
            dict(type='MultiBranch', branch_field=allspark_branches,
                 unsup_weak=[dict(type='PackSegInputs')]),
        ])))
