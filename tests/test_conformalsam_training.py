"""ConformalSAM trains end to end: calibration, Stage I, the switch, Stage II, resume."""
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmseg.registry import RUNNERS

from conformalsam_fixtures import conformalsam_config, make_annotated_shapes


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
    return make_annotated_shapes(str(tmp_path_factory.mktemp('annotated_shapes')))


@HOOKS.register_module(force=True)
class RecordStageHook(Hook):
    priority = 'LOW'  # after SelfRelianceHook has switched
    stages = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        RecordStageHook.stages.append((runner.iter, int(runner.model.stage)))


class Crash(RuntimeError):
    pass


@HOOKS.register_module(force=True)
class CrashAfterHook(Hook):
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise Crash('simulated crash')


def _run(cfg):
    runner = RUNNERS.build(cfg)
    runner.train()
    return runner


@pytest.mark.parametrize('host', ['SelfReliance', 'UniMatch', 'AllSpark'])
def test_stage_switch_at_the_configured_iteration(annotated, tmp_path, host):
    RecordStageHook.stages = []
    cfg = conformalsam_config(annotated, tmp_path, max_iters=4, switch_at=2, host=host)
    cfg.custom_hooks.append(dict(type='RecordStageHook'))
    runner = _run(cfg)
    model = runner.model
    assert type(model).__name__ == 'ConformalSAM' and type(model.host).__name__ == host
    assert RecordStageHook.stages == [(0, 1), (1, 1), (2, 2), (3, 2)]
    # logs: Stage I's losses only on Stage I lines; pixel mode logs one q, not one per class
    text = (tmp_path / runner.timestamp / f'{runner.timestamp}.log').read_text()
    lines = {int(m.group(1)): m.group(0) for m in re.finditer(r'Iter\(train\) \[(\d+)/4\].*', text)}
    assert sorted(lines) == [1, 2, 3, 4]
    for it, line in lines.items():
        stage_one = 'unsup_loss_annotator' in line or 'pseudo_kept_ratio' in line
        assert stage_one == (it <= 2), (it, line)
        assert 'conformal_q: ' in line and 'conformal_q/' not in line
    # the weak view alone receives and packs the annotator output
    unlabeled = runner.train_dataloader.dataset.unlabeled
    views = unlabeled.pipeline.transforms[-1]
    assert views.exclusive_keys == {'unsup_weak': ['annotator_topk_map', 'annotator_topk']}
    samples = unlabeled[0]['data_samples']
    for branch, sample in samples.items():
        if sample is not None:
            assert ('annotator_topk_index' in sample) == (branch == 'unsup_weak'), branch
    # Calibration ran before training: thresholds in the model, report in the work dir.
    assert model.pseudo_label_head.is_calibrated
    report = json.loads((tmp_path / 'calibration_report.json').read_text())
    assert 0 < report['filtering']['kept_ratio'] <= 1
    assert report['holdout_coverage'] is not None
    assert osp.getsize(tmp_path / 'calibration_report.png') > 1000


def test_fraction_switch_and_thresholds_in_checkpoints(annotated, tmp_path):
    cfg = conformalsam_config(annotated, tmp_path, max_iters=4, switch_at=0.75)
    runner = _run(cfg)
    q = runner.model.pseudo_label_head.thresholds.clone()
    assert torch.isfinite(q).all()
    for it, stage in ((3, 1), (4, 2)):  # iteration index 3 (the 4th) is the first of Stage II
        state = torch.load(tmp_path / f'iter_{it}.pth', map_location='cpu')['state_dict']
        assert int(state['stage']) == stage
        torch.testing.assert_close(state['pseudo_label_head.thresholds'], q)


def test_resume_after_the_switch_stays_in_stage_two(annotated, tmp_path):
    straight = conformalsam_config(annotated, tmp_path / 'straight', max_iters=5, switch_at=2)
    _run(straight)

    crashed = conformalsam_config(annotated, tmp_path / 'resumed', max_iters=5, switch_at=2)
    crashed.custom_hooks.append(dict(type='CrashAfterHook', at=3))
    with pytest.raises(Crash):
        _run(crashed)
    RecordStageHook.stages = []
    resumed = conformalsam_config(annotated, tmp_path / 'resumed', max_iters=5, switch_at=2)
    resumed.custom_hooks.append(dict(type='RecordStageHook'))
    resumed.resume = True
    runner = _run(resumed)
    assert RecordStageHook.stages == [(3, 2), (4, 2)]
    log = sorted((tmp_path / 'resumed').glob('*/*.log'))[-1].read_text()
    assert 'calibration skipped' in log and 'ConformalSAM calibration (' not in log
    assert int(runner.model.host.weighter.start_iter) == 2

    a = torch.load(tmp_path / 'straight' / 'iter_5.pth', map_location='cpu')['state_dict']
    b = torch.load(tmp_path / 'resumed' / 'iter_5.pth', map_location='cpu')['state_dict']
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name, equal_nan=True)


def test_a_resume_with_other_filter_options_calibrates_again(annotated, tmp_path):
    crashed = conformalsam_config(annotated, tmp_path, max_iters=3, switch_at=None)
    crashed.custom_hooks.append(dict(type='CrashAfterHook', at=1))
    with pytest.raises(Crash):
        _run(crashed)
    q = torch.load(tmp_path / 'iter_1.pth', map_location='cpu')['state_dict'][
        'pseudo_label_head.thresholds']
    resumed = conformalsam_config(annotated, tmp_path, max_iters=3, switch_at=None)
    resumed.model.pseudo_label_head.alpha = 0.3
    resumed.resume = True
    runner = _run(resumed)
    log = sorted(tmp_path.glob('*/*.log'))[-1].read_text()
    assert 'calibrating again' in log and 'ConformalSAM calibration (alpha=0.3' in log
    assert not torch.equal(runner.model.pseudo_label_head.thresholds, q)


def test_annotator_classes_must_match_the_dataset(annotated, tmp_path):
    cfg = conformalsam_config(annotated, tmp_path, max_iters=1)
    cfg.train_dataloader.dataset.labeled.metainfo = dict(
        classes=('background', 'circle', 'square', 'triangle'))
    cfg.train_dataloader.dataset.unlabeled.metainfo = dict(
        classes=('background', 'circle', 'square', 'triangle'))
    with pytest.raises(ValueError) as err:
        _run(cfg)
    message = str(err.value)
    assert "'disc'" in message and "'circle'" in message


def test_confidence_filter_baseline_stays_in_stage_one(annotated, tmp_path):
    """filter='confidence' (the fixed-threshold baselines): no calibration, the annotator's
    argmax kept where its probability >= tau; self_reliance_at=None: Stage I only."""
    from conformalsam_mmseg.annotators.cache import AnnotatorCache, topk_to_dense
    RecordStageHook.stages = []
    cfg = conformalsam_config(annotated, tmp_path, max_iters=3, switch_at=None)
    cfg.model.pseudo_label_head.update(filter='confidence', confidence_threshold=0.6)
    cfg.custom_hooks.append(dict(type='RecordStageHook'))
    runner = _run(cfg)
    assert RecordStageHook.stages == [(0, 1), (1, 1), (2, 1)]
    assert not (tmp_path / 'calibration_report.json').exists()
    head = runner.model.pseudo_label_head
    assert head.filter == 'confidence' and not head.needs_calibration
    assert torch.allclose(head.thresholds, torch.full((4, ), 0.6, dtype=torch.float64))
    cache = AnnotatorCache(osp.join(annotated, 'annotator'))
    entry = cache.load(open(osp.join(annotated, 'splits', 'unlabeled.txt')).read().split()[0])
    probs = topk_to_dense(entry.index, entry.prob, 4)
    labels, _ = head(probs)
    max_prob, argmax = probs.max(0)
    expected = argmax.masked_fill(max_prob < 0.6, 255)
    assert 0 < int((expected == 255).sum()) < expected.numel()  # the threshold acts here
    assert torch.equal(labels[0], expected)


@pytest.mark.parametrize('options, message', [
    (dict(filter='fixed'), 'pseudo_label_head.filter'),
    (dict(filter='confidence'), 'confidence_threshold'),
    (dict(filter='confidence', confidence_threshold=1.5), 'confidence_threshold'),
    (dict(alpha=1.5), 'alpha'),
    (dict(mode='region'), 'mode'),
    (dict(filter='risk', risk_cfg=dict(target=0.1)), 'risk_cfg'),
])
def test_bad_filter_options_are_refused_when_the_model_is_built(annotated, tmp_path, options,
                                                                message):
    from mmseg.registry import MODELS
    cfg = conformalsam_config(annotated, tmp_path)
    cfg.model.pseudo_label_head.update(options)
    with pytest.raises(ValueError, match=message):
        MODELS.build(cfg.model)


def test_the_report_says_when_the_cache_truncation_bounds_q(annotated, tmp_path):
    """The fixture's cache keeps the top-3 of 4 classes: the report gives the share of labeled
    pixels whose true class was cut (score 1 whatever q), measured again here."""
    import cv2

    from conformalsam_mmseg.annotators.cache import AnnotatorCache, topk_to_dense
    from conformalsam_mmseg.conformal.truncation import truncated_counts
    cfg = conformalsam_config(annotated, tmp_path, max_iters=1, switch_at=None)
    _run(cfg)
    report = json.loads((tmp_path / 'calibration_report.json').read_text())['truncation']
    cache = AnnotatorCache(osp.join(annotated, 'annotator'))
    cut = labeled = 0
    for stem in open(osp.join(annotated, 'splits', 'labeled.txt')).read().split():
        entry = cache.load(stem)
        gt = cv2.imread(osp.join(annotated, 'labels', 'train', stem + '.png'),
                        cv2.IMREAD_UNCHANGED)
        c, n = truncated_counts(topk_to_dense(entry.index, entry.prob, 4),
                                torch.from_numpy(gt).long(), 3)
        cut, labeled = cut + c, labeled + n
    assert report['topk'] == 3 and report['num_classes'] == 4
    assert report['fraction'] == pytest.approx(cut / labeled)
    assert 'top-3 of 4 classes' in report['message']
