"""ConformalSAM trains end to end: calibration, Stage I, the switch, Stage II, resume."""
import json
import os.path as osp

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
    cfg.custom_hooks = [dict(type='RecordStageHook')]
    runner = _run(cfg)
    model = runner.model
    assert type(model).__name__ == 'ConformalSAM' and type(model.host).__name__ == host
    assert RecordStageHook.stages == [(0, 1), (1, 1), (2, 2), (3, 2)]
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
    crashed.custom_hooks = [dict(type='CrashAfterHook', at=3)]
    with pytest.raises(Crash):
        _run(crashed)
    RecordStageHook.stages = []
    resumed = conformalsam_config(annotated, tmp_path / 'resumed', max_iters=5, switch_at=2)
    resumed.custom_hooks = [dict(type='RecordStageHook')]
    resumed.resume = True
    runner = _run(resumed)
    assert RecordStageHook.stages == [(3, 2), (4, 2)]
    assert int(runner.model.host.weighter.start_iter) == 2

    a = torch.load(tmp_path / 'straight' / 'iter_5.pth', map_location='cpu')['state_dict']
    b = torch.load(tmp_path / 'resumed' / 'iter_5.pth', map_location='cpu')['state_dict']
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name, equal_nan=True)


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
    """filter='confidence' (the fixed-threshold baselines): no calibration, q = 1 - tau, the
    annotator's argmax kept where its probability >= tau; self_reliance_at=None: Stage I only."""
    from conformalsam_mmseg.annotators.cache import AnnotatorCache, topk_to_dense
    RecordStageHook.stages = []
    cfg = conformalsam_config(annotated, tmp_path, max_iters=3, switch_at=None)
    cfg.conformalsam.update(filter='confidence', confidence_threshold=0.6)
    cfg.custom_hooks = [dict(type='RecordStageHook')]
    runner = _run(cfg)
    hooks = [type(h).__name__ for h in runner.hooks]
    assert 'ConformalCalibrationHook' not in hooks and 'SelfRelianceHook' not in hooks
    assert RecordStageHook.stages == [(0, 1), (1, 1), (2, 1)]
    assert not (tmp_path / 'calibration_report.json').exists()
    head = runner.model.pseudo_label_head
    assert head.rule == 'argmax_in_set'
    assert torch.allclose(head.thresholds, torch.full((4, ), 0.4, dtype=torch.float64))
    cache = AnnotatorCache(osp.join(annotated, 'annotator'))
    entry = cache.load(open(osp.join(annotated, 'splits', 'unlabeled.txt')).read().split()[0])
    probs = topk_to_dense(entry.index, entry.prob, 4)
    labels, _ = head(probs)
    max_prob, argmax = probs.max(0)
    expected = argmax.masked_fill(max_prob < 0.6, 255)
    assert 0 < int((expected == 255).sum()) < expected.numel()  # the threshold acts here
    assert torch.equal(labels[0], expected)


@pytest.mark.parametrize('options, message', [
    (dict(filter='fixed'), 'conformalsam.filter'),
    (dict(filter='confidence'), 'confidence_threshold'),
    (dict(filter='confidence', confidence_threshold=1.5), 'confidence_threshold'),
])
def test_bad_filter_options_are_refused(annotated, tmp_path, options, message):
    from conformalsam_mmseg.engine import apply_conformalsam
    cfg = conformalsam_config(annotated, tmp_path)
    cfg.conformalsam.update(options)
    with pytest.raises(ValueError, match=message):
        apply_conformalsam(cfg)
