"""Semi-supervised segmentors refuse a loss_decode they would not use."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmseg.registry import MODELS

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.segmentors.plain_cross_entropy import check_plain_cross_entropy
from conftest import REPO
from test_allspark import tiny_allspark_cfg

SEMI = ('UniMatch', 'AllSpark', 'SelfReliance')


def head(**loss):
    cfg = dict(type='FCNHead', in_channels=4, channels=4, num_convs=1, num_classes=3,
               loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                                avg_non_ignore=True))
    cfg['loss_decode'].update(loss)
    return MODELS.build(cfg)


@pytest.mark.parametrize('loss, named', [
    (dict(class_weight=[1.0, 2.0, 1.0]), 'class_weight'),
    (dict(avg_non_ignore=False), 'avg_non_ignore=False'),
    (dict(loss_weight=0.4), 'loss_weight=0.4'),
    (dict(use_sigmoid=True), 'use_sigmoid=True'),
])
def test_a_loss_the_methods_would_not_use_is_refused(loss, named):
    with pytest.raises(ValueError, match=f'UniMatch .*{named}.*decode_head.loss_decode='):
        check_plain_cross_entropy(head(**loss), 'UniMatch')
    check_plain_cross_entropy(head(), 'UniMatch')  # the plain one is fine


def test_other_losses_are_refused_when_the_model_is_built():
    cfg = tiny_allspark_cfg()
    cfg.segmentor.decode_head.loss_decode = [
        dict(type='CrossEntropyLoss', loss_weight=1.0, avg_non_ignore=True),
        dict(type='DiceLoss', loss_weight=0.5)]
    with pytest.raises(ValueError, match='AllSpark .*2 losses'):
        MODELS.build(cfg)
    cfg.segmentor.decode_head.loss_decode = dict(type='FocalLoss')
    with pytest.raises(ValueError, match='type FocalLoss'):
        MODELS.build(cfg)


def test_every_semi_supervised_config_uses_the_plain_loss():
    checked = 0
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)):
        if osp.basename(osp.dirname(path)) in ('_base_', 'schedules', 'datasets', 'semi'):
            continue
        model = Config.fromfile(path).get('model') or {}
        if model.get('type') not in SEMI:
            continue
        check_plain_cross_entropy(MODELS.build(model['segmentor']['decode_head']), path)
        checked += 1
    assert checked >= 30
