# UniMatch on DeepLabV3+ ResNet-101: the network of ./deeplabv3plus_r101.py as the student,
# batches prepared branch by branch ('sup', 'unsup_weak', 'unsup_strong1', 'unsup_strong2').
_base_ = './deeplabv3plus_r101.py'
model = dict(
    _delete_=True,
    type='UniMatch',
    segmentor={{_base_.model}},
    data_preprocessor=dict(
        type='MultiBranchDataPreprocessor',
        data_preprocessor={{_base_.data_preprocessor}}),
    semi_train_cfg=dict(
        conf_thresh=0.95,
        fp_dropout=0.5,
        cutmix_prob=0.5,
        cutmix_area=(0.02, 0.4),
        cutmix_ratio=(0.3, 1 / 0.3),
        loss_weights=dict(x=0.5, s1=0.125, s2=0.125, fp=0.25),
        fp_levels='head',  # Dropout2d on the levels the head reads: c1 and c4
        # CutMix source = the batch u's images, newly augmented (with the sampler's
        # source_repeats=[1, 2]); 'other_images' mixes with other unlabeled images
        mix_source='same_images'),
    semi_test_cfg=dict(predict_on='student'))
