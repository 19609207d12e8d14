# The UniMatch / AllSpark recipe: SGD lr 0.001, momentum 0.9, wd 1e-4; as the authors, every
# parameter outside the backbone (the neck, e.g. AllSpark's module, and the heads) trains at
# lr x 10 (their `lr_multi`); poly decay with power 0.9 per iteration down to 0 at the last
# iteration (`end` defaults to train_cfg.max_iters). Each split's config sets
# `train_cfg = dict(max_iters=...)`: 80 epochs over the unlabeled set, an epoch being
# len(unlabeled) / batch iterations.
optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=1e-4)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=optimizer,
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={
        'neck': dict(lr_mult=10.0),
        'decode_head': dict(lr_mult=10.0),
        'auxiliary_head': dict(lr_mult=10.0)
    }))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=2,
        save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
