# UniMatch's and AllSpark's street-scene (Cityscapes) optimizer, the closest of their recipes
# to CamVid: SGD lr 0.005, momentum 0.9, wd 1e-4, every parameter at the same rate (their
# lr_multi 1.0, where the VOC / ADE20K recipe of ./unimatch_sgd.py has x10 outside the
# backbone), poly decay with power 0.9 down to 0 at the last iteration.
_base_ = './unimatch_sgd.py'
optimizer = dict(type='SGD', lr=0.005, momentum=0.9, weight_decay=1e-4)
optim_wrapper = dict(
    optimizer=optimizer,
    paramwise_cfg=dict(custom_keys={
        'neck': dict(lr_mult=1.0),
        'decode_head': dict(lr_mult=1.0),
        'auxiliary_head': dict(lr_mult=1.0)
    }))
