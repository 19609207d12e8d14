# ConformalSAM's parts (docs/conformalsam.md). A ConformalSAM config inherits a host config and
# the data set's version of this file (conformalsam_voc.py, _ade20k.py, _camvid.py), and wraps
# the host's model, as MMDetection's semi-supervised configs wrap a detector:
#
#     _base_ = ['./unimatch/unimatch_deeplabv3plus_r101_voc-classic-92.py',
#               './_base_/conformalsam_voc.py']
#     model = dict(_delete_=True, type='ConformalSAM', host=_base_.model,
#                  pseudo_label_head=_base_.pseudo_label_head, self_reliance_at=0.75)
#     train_dataloader = dict(dataset=dict(annotator_cache=_base_.annotator_cache))
#
# `pseudo_label_head` and `annotator_cache` below are parts that such a config copies into its
# model and dataset (like crop_size or train_pipeline in mmseg's configs): change them there,
# e.g. --cfg-options model.pseudo_label_head.alpha=0.1. tools/print_config.py shows the result.
pseudo_label_head = dict(
    type='AnnotatorPseudoLabelHead',
    num_classes=None,            # the data set's version sets it
    # 'conformal' (the method); 'risk': the argmax where its probability >= a threshold
    # calibrated on the labeled images so that the error of the kept labels is at most
    # risk_cfg.target_error (docs/conformal.md); 'confidence': the argmax where its probability
    # >= confidence_threshold (0: the raw annotator labels), no calibration
    filter='conformal',
    alpha=0.05,                  # the paper's error rate (ablations: 0.1, 0.01)
    mode='pixel',                # one q over all labeled pixels (the paper's); 'class', 'image'
    score='lac',                 # s = 1 - p_y
    rule='foreground_first',     # the paper's set-to-label rule; 'singleton', 'argmax_in_set'
    background_index=None,       # 0 on VOC; None where there is no background class
    confidence_threshold=None,
    # filter='risk': per-image wrong / kept ('false_label_rate', Learn-then-Test, with
    # P(error > target_error) <= delta) or kept-and-wrong / labeled ('kept_error', conformal
    # risk control); fallback for mode='class' classes with too few images
    risk_cfg=dict(target_error=0.05, risk='false_label_rate', delta=0.1, fallback='pooled'))
# the cache of tools/generate_pseudo_labels.py, covering the labeled and unlabeled images
annotator_cache = None
custom_hooks = [
    # calibrates the model's pseudo_label_head on the labeled images before training;
    # holdout_folds: held-out coverage by cross-calibration; interval: recalibrate every N iters
    dict(type='ConformalCalibrationHook', holdout_folds=5, interval=None),
    # Stage II (self-reliance) from model.self_reliance_at
    dict(type='SelfRelianceHook'),
]
