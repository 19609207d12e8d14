# ConformalSAM as a plug-in: inherit this file next to a semi-supervised config, e.g.
#     _base_ = ['./unimatch/unimatch_deeplabv3plus_r101_voc-classic-92.py',
#               './_base_/conformalsam_voc.py']
# ConformalSAMRunner then wraps the config's model in ConformalSAM (Stage I: the annotator's
# labels filtered by conformal prediction; Stage II from `self_reliance_at`: the host method's
# own training), loads the annotator cache for the unlabeled images, and adds
# ConformalCalibrationHook and SelfRelianceHook. See docs/conformalsam.md.
runner_type = 'ConformalSAMRunner'
conformalsam = dict(
    # the cache of tools/generate_pseudo_labels.py, covering the labeled and unlabeled images
    annotator_cache=None,
    alpha=0.05,                  # the paper's error rate (ablations: 0.1, 0.01)
    mode='pixel',                # one q over all labeled pixels (the paper's); 'class', 'image'
    score='lac',                 # s = 1 - p_y
    rule='foreground_first',     # the paper's set-to-label rule; 'singleton', 'argmax_in_set'
    background_index=None,       # 0 on VOC; None where there is no background class
    holdout_folds=5,             # held-out coverage of the calibration, logged and reported
    calibration_interval=None,   # recalibrate every N iterations (None: before training only)
    self_reliance_at=0.75,       # Stage II from 75% of max_iters (VOC 60/80, ADE20K 30/40 ep.);
                                 # None: Stage I only
    # 'conformal' (the method); 'confidence': baseline keeping the annotator's argmax where its
    # probability >= confidence_threshold (0: the raw labels), no calibration; 'risk': the
    # argmax where its probability >= a threshold calibrated on the labeled images so that the
    # error of the kept labels is at most target_error (docs/conformal.md)
    filter='conformal',
    confidence_threshold=None,
    target_error=0.05,           # filter='risk': the tolerated error of the kept labels
    risk='false_label_rate',     # per-image wrong / kept (Learn-then-Test); 'kept_error':
                                 # per-image kept-and-wrong / labeled (conformal risk control)
    delta=0.1,                   # Learn-then-Test: P(error > target_error) <= delta
    fallback='pooled',           # mode='class', classes with too few images: 'keep_nothing'
    stage_one_weights=dict(sup=1.0, unsup=1.0))
