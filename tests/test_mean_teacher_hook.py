import pytest
import torch
from mmengine.config import Config
from mmseg.registry import HOOKS, MODELS

import conformalsam_mmseg  # noqa: F401
from helpers import DEMO_CONFIG


def test_teacher_is_the_exponential_moving_average_of_the_student():
    model = MODELS.build(dict(type='UniMatch', segmentor=Config.fromfile(DEMO_CONFIG).model,
                              semi_train_cfg=dict(ema_teacher=True)))
    model.init_weights()
    hook = HOOKS.build(dict(type='MeanTeacherHook', momentum=0.1))
    name = 'decode_head.conv_seg.weight'
    teacher0 = model.teacher.state_dict()[name].clone()
    assert torch.equal(teacher0, model.student.state_dict()[name])
    with torch.no_grad():
        model.student.decode_head.conv_seg.weight.add_(1.0)
    student = model.student.state_dict()[name].clone()
    hook.momentum_update(model, 0.1)
    torch.testing.assert_close(model.teacher.state_dict()[name], 0.9 * teacher0 + 0.1 * student)
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_bad_momentum_and_missing_teacher_fail_clearly():
    with pytest.raises(ValueError, match='momentum'):
        HOOKS.build(dict(type='MeanTeacherHook', momentum=1.5))
    with pytest.raises(ValueError, match='ema_teacher=True'):
        MODELS.build(dict(type='UniMatch', segmentor=Config.fromfile(DEMO_CONFIG).model,
                          semi_test_cfg=dict(predict_on='teacher')))
