"""pseudo_label_head.filter='risk': the calibration hook chooses confidence thresholds on the
labeled images, the head keeps the argmax where its probability reaches them, the report and
picture are written; bad options fail before training."""
import json
import os.path as osp

import pytest
import torch
from mmseg.registry import RUNNERS

from conformalsam_fixtures import conformalsam_config, make_annotated_shapes


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
    return make_annotated_shapes(str(tmp_path_factory.mktemp('annotated_shapes')))


def _labeled_calibration(annotated, **options):
    """The same calibration, made directly from the cache and the ground truth."""
    import cv2
    from conformalsam_mmseg.annotators.cache import AnnotatorCache, topk_to_dense
    from conformalsam_mmseg.conformal import RiskCalibrator
    cal = RiskCalibrator(4, **options)
    cache = AnnotatorCache(osp.join(annotated, 'annotator'))
    stems = open(osp.join(annotated, 'splits', 'labeled.txt')).read().split()
    for stem in stems:
        entry = cache.load(stem)
        gt = cv2.imread(osp.join(annotated, 'labels', 'train', stem + '.png'),
                        cv2.IMREAD_UNCHANGED)
        cal.update(topk_to_dense(entry.index, entry.prob, 4).unsqueeze(0),
                   torch.from_numpy(gt).long().unsqueeze(0))
    return cal.calibrate(warn=False)


@pytest.mark.parametrize('mode', ['pixel', 'class'])
def test_risk_filter_trains_and_reports(annotated, tmp_path, mode):
    options = dict(target_error=0.2, risk='kept_error', delta=0.1, mode=mode)
    cfg = conformalsam_config(annotated, tmp_path, max_iters=2, switch_at=None)
    cfg.model.pseudo_label_head.update(filter='risk', mode=mode, risk_cfg=dict(
        target_error=0.2, risk='kept_error', delta=0.1))
    runner = RUNNERS.build(cfg)
    runner.train()
    head = runner.model.pseudo_label_head
    assert head.filter == 'risk'
    expected = _labeled_calibration(annotated, **options)
    assert torch.equal(head.thresholds, expected.thresholds)
    report = json.loads((tmp_path / 'calibration_report.json').read_text())
    cal = report['calibration']
    assert cal['risk'] == 'kept_error' and cal['mode'] == mode and cal['target'] == 0.2
    pooled = cal['groups'][0]
    assert pooled['n'] == 6 and pooled['source'] == 'calibrated'
    lo, hi = pooled['risk_interval']
    assert lo <= pooled['risk'] <= hi
    assert 0 < report['unlabeled']['filtering']['kept_ratio'] <= 1
    assert report['unlabeled']['filtering']['pixels'] == 18 * 64 * 80
    assert report['labeled']['filtering']['precision'] is not None
    assert osp.getsize(tmp_path / 'calibration_report.png') > 1000


def test_too_few_labeled_images_keep_nothing_and_warn(annotated, tmp_path, caplog):
    cfg = conformalsam_config(annotated, tmp_path, max_iters=1, switch_at=None)
    cfg.model.pseudo_label_head.update(filter='risk',                # LTT needs 45 images
                                       risk_cfg=dict(target_error=0.05))
    runner = RUNNERS.build(cfg)
    runner.train()
    assert torch.isinf(runner.model.pseudo_label_head.thresholds).all()
    report = json.loads((tmp_path / 'calibration_report.json').read_text())
    assert report['unlabeled']['filtering']['kept_ratio'] == 0
    assert any('only 6 calibration images, 45 needed' in n for n in report['calibration']['notes'])


@pytest.mark.parametrize('option,value', [('target_error', 0.0), ('target_error', 1.2),
                                          ('delta', 1.0), ('risk', 'coverage'),
                                          ('mode', 'image')])
def test_bad_risk_options_fail_before_training(annotated, tmp_path, option, value):
    cfg = conformalsam_config(annotated, tmp_path, max_iters=1, switch_at=None)
    if option == 'mode':
        cfg.model.pseudo_label_head.update(filter='risk', mode=value)
    else:
        cfg.model.pseudo_label_head.update(filter='risk', risk_cfg={option: value})
    with pytest.raises(ValueError, match=option):
        RUNNERS.build(cfg).train()
