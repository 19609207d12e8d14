"""The CamVid benchmark's measurements (benchmarks/camvid/): label quality, rows, scalars."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks', 'camvid'))
import quality  # noqa: E402
import training  # noqa: E402

CLASSES = ('a', 'b', 'c')


def _random_case(seed, n=4, h=12, w=10, k=3):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(n, k, h, w, generator=g), dim=1)
    gt = torch.randint(0, k, (n, h, w), generator=g)
    gt[:, 0, :] = 255  # void pixels
    return probs, gt


def test_label_counts_by_definition():
    labels = torch.tensor([[0, 0, 1, 255], [2, 1, 1, 0]])
    gt = torch.tensor([[0, 1, 1, 2], [255, 1, 0, 0]])
    counts = quality.LabelCounts(3)
    counts.update(labels, gt)
    m = counts.metrics(CLASSES)
    assert m['kept_ratio'] == 7 / 8
    # kept and labeled: (0,0) (0,1) (1,1) (1,1) (1,0) (0,0) -> 4 correct of 6
    assert m['precision'] == pytest.approx(4 / 6)
    # class a: tp 2, assigned 3, truth 3 -> 2/4; b: tp 2, assigned 3, truth 3 -> 2/4;
    # c: truth 0 on kept pixels -> not averaged
    assert m['mIoU'] == pytest.approx(0.5)
    assert m['per_class_precision'] == {'a': pytest.approx(2 / 3), 'b': pytest.approx(2 / 3),
                                        'c': pytest.approx(float('nan'), nan_ok=True)}
    # what the 6 kept labels are: a at (0,0) (0,1) (1,3), b at (0,2) (1,1) (1,2)
    assert m['per_class_share'] == dict(a=0.5, b=0.5, c=0.0)
    counts.update(torch.tensor([[2, 2]]), torch.tensor([[2, 0]]))
    m = counts.metrics(CLASSES)   # 8 kept: a 3, b 3, c 2; their ground truth: a 4, b 3, c 1
    assert m['per_class_share'] == dict(a=3 / 8, b=3 / 8, c=2 / 8)
    assert m['truth_share'] == dict(a=4 / 8, b=3 / 8, c=1 / 8)


def test_confidence_curve_matches_thresholding_each_tau():
    probs, gt = _random_case(0)
    curve = quality.ConfidenceCurve(bins=20)
    for p, g in zip(probs, gt):
        max_prob, argmax = p.max(0)
        curve.update(max_prob, argmax, g)
    pts = curve.points()
    for i in (0, 7, 12):
        tau = pts['tau'][i]
        counts = quality.LabelCounts(3)
        for p, g in zip(probs, gt):
            max_prob, argmax = p.max(0)
            counts.update(argmax.masked_fill(max_prob < tau, 255), g)
        m = counts.metrics(CLASSES)
        assert pts['kept_ratio'][i] == pytest.approx(m['kept_ratio'])
        assert pts['precision'][i] == pytest.approx(m['precision'])


def test_evaluate_calibrates_on_labeled_and_scores_the_unlabeled():
    probs, gt = _random_case(1, n=6)
    data = {f'img{i}': (probs[i], gt[i]) for i in range(6)}
    out = quality.evaluate(data.__getitem__, ['img0', 'img1', 'img2'], ['img3', 'img4', 'img5'],
                           CLASSES, alphas=(0.1, 0.3), taus=(0.5, ), curve_alphas=(0.2, ))
    m = out['methods']
    assert list(m) == ['raw', 'threshold 0.5', 'conformal pixel, alpha 0.1',
                       'conformal pixel, alpha 0.3', 'conformal class, alpha 0.1',
                       'conformal class, alpha 0.3']
    assert m['raw']['kept_ratio'] == 1.0
    # raw precision = accuracy of the argmax on the unlabeled, non-void pixels
    u_probs, u_gt = probs[3:], gt[3:]
    valid = u_gt != 255
    assert m['raw']['precision'] == pytest.approx(
        float((u_probs.argmax(1) == u_gt)[valid].float().mean()))
    # pixel mode, no background class: keep the argmax exactly where max p >= 1 - q, q
    # calibrated on the labeled images by the conformal quantile of 1 - p_y
    from conformalsam_mmseg.conformal import conformal_quantile
    s = 1 - probs[:3].gather(1, gt[:3].clamp(max=2).unsqueeze(1))[:, 0][gt[:3] != 255]
    q = conformal_quantile(s.double(), 0.3)
    assert out['thresholds']['conformal pixel, alpha 0.3'][0] == pytest.approx(float(q),
                                                                                abs=1e-4)
    max_prob, argmax = u_probs.max(1)
    kept = max_prob >= 1 - q
    assert m['conformal pixel, alpha 0.3']['kept_ratio'] == pytest.approx(
        float(kept.float().mean()), abs=2e-3)
    assert set(out['class_curve']) == {0.1, 0.2, 0.3}


def test_every_row_trains_the_same_schedule_on_its_split():
    protocol = dict(iters=50, lr=0.01, labeled_batch=4, log_interval=10,
                    annotator_cache='data/annotator_cache/x')
    seen = set()
    for row in training.ROWS:
        opts = training.row_options(row, '1-4', 3, protocol,
                                    choices={None: dict(tau=0.7, alpha=0.3, risk_target=0.1)})
        assert osp.exists(osp.join(training.CONFIGS, row.config))
        assert opts['train_cfg.max_iters'] == 50 and opts['randomness.seed'] == 3
        # the hosts and their supervised row: the authors' street-scene recipe
        assert (row.recipe == training.HOSTS) == (row.host in ('UniMatch', 'AllSpark')
                                                  or row.name == 'supervised_hosts_recipe')
        if row.recipe == training.HOSTS:
            assert 'optim_wrapper.optimizer.lr' not in opts
            cfg = Config.fromfile(osp.join(training.CONFIGS, row.config))
            assert cfg.optim_wrapper.optimizer.lr == 0.005
        else:
            assert opts['optim_wrapper.optimizer.lr'] == 0.01
        ann = [v for k, v in opts.items() if k.endswith('ann_file')]
        assert ann and all(v.startswith('splits/camvid/1-4/') for v in ann)
        if row.conformalsam:
            assert opts['train_dataloader.dataset.annotator_cache'] == 'data/annotator_cache/x'
        seen.add((row.config, ) + tuple(sorted((k, str(v)) for k, v in opts.items())))
    assert len(seen) == len(training.ROWS)  # no two rows are the same run
    raw = training.row_options(training.ROWS[1], '1-4', 0, protocol)
    assert raw['model.pseudo_label_head.confidence_threshold'] == 0.0
    assert raw['model.self_reliance_at'] is None
    for name in ('risk', 'conformalsam_risk'):   # target*, with the training default's risk
        risk = training.row_options(next(r for r in training.ROWS if r.name == name), '1-4', 0, protocol,
                                    choices={None: dict(risk_target=0.1)})
        assert risk['model.pseudo_label_head.risk_cfg.target_error'] == 0.1
        assert risk['model.pseudo_label_head.risk_cfg.risk'] == 'false_label_rate'


def test_every_row_option_names_a_key_its_config_has():
    """An option naming no key of the config would be added and ignored: the row would train
    something else than it says."""
    from mmengine.config import Config
    protocol = dict(iters=50, lr=0.01, labeled_batch=4, log_interval=10,
                    annotator_cache='data/annotator_cache/x', selection=True)
    # BaseSegDataset's ann_file ('' by default: every image of the folder) is an argument the
    # val set's config leaves out; the selection set names its 62 images with it
    new_keys = {'val_dataloader.dataset.ann_file'}
    for row in training.ROWS:
        cfg = Config.fromfile(osp.join(training.CONFIGS, row.config))
        opts = training.row_options(row, '1-8', 0, protocol,
                                    choices={None: dict(tau=0.7, alpha=0.3, risk_target=0.1)})
        for key in set(opts) - new_keys:
            node = cfg
            for part in key.split('.'):
                assert part in node, f'{row.name}: {key} is not a key of {row.config}'
                node = node[part]


def test_read_scalars_splits_time_by_stage(tmp_path):
    run = tmp_path / '20260101_000000' / 'vis_data'
    run.mkdir(parents=True)
    entries = [dict(iter=10, time=9.0, conformalsam_stage=1),  # start-up window, dropped
               dict(iter=20, time=1.0, conformalsam_stage=1),
               dict(iter=30, time=2.0, conformalsam_stage=1),
               dict(iter=40, time=4.0, conformalsam_stage=2),
               dict(conformal_kept_ratio=0.5, conformal_q_x=0.1, step=0),
               dict(mIoU=40.0, time=0.1, step=40)]
    (run / 'scalars.json').write_text('\n'.join(json.dumps(e) for e in entries))
    out = training.read_scalars(str(tmp_path))
    assert out['mIoU'] == 40.0
    assert out['seconds_per_iter'] == dict(all=pytest.approx(7 / 3), stage1=1.5, stage2=4.0)
    assert out['calibration'] == dict(conformal_kept_ratio=0.5, conformal_q_x=0.1)


def test_missing_camvid_names_the_fix(tmp_path, monkeypatch):
    import inputs
    monkeypatch.setattr(inputs, 'CAMVID', str(tmp_path / 'data' / 'camvid'))
    monkeypatch.setattr(inputs, 'SHARED_CAMVID', str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='tools/prepare_camvid.py'):
        inputs.check_camvid()


def test_shared_camvid_is_linked_when_present(tmp_path, monkeypatch):
    import inputs
    shared = tmp_path / 'shared' / 'camvid'
    for sub in ('images/train', 'labels/train', 'images/val', 'labels/val'):
        (shared / sub).mkdir(parents=True)
    monkeypatch.setattr(inputs, 'DATA', str(tmp_path / 'repo' / 'data'))
    monkeypatch.setattr(inputs, 'CAMVID', str(tmp_path / 'repo' / 'data' / 'camvid'))
    monkeypatch.setattr(inputs, 'SHARED_CAMVID', str(shared))
    inputs.check_camvid()
    assert osp.islink(inputs.CAMVID) and osp.samefile(inputs.CAMVID, shared)


def _risk_row(risk, target, kept_ratio, precision, kept_wrong):
    return dict(kind='risk', risk=risk, mode='pixel', target=target, delta=0.1,
                kept_ratio=kept_ratio, precision=precision, kept_wrong=kept_wrong)


def test_risk_findings_compare_the_measured_error_with_the_target():
    import report_risk
    flr, ke = 'false_label_rate', 'kept_error'
    methods = {
        'raw': dict(kind='raw', kept_ratio=1.0, precision=0.8),
        'conformal pixel, alpha 0.05': dict(kind='conformal', mode='pixel', alpha=0.05,
                                            kept_ratio=0.9, precision=0.85),
        'risk flr 0.02': _risk_row(flr, 0.02, 0.0, 0.0, 0.0),
        'risk flr 0.1': _risk_row(flr, 0.1, 0.5, 0.85, 0.06),     # error 15% > 10%
        'risk ke 0.1': _risk_row(ke, 0.1, 0.7, 0.88, 0.08),       # kept & wrong 8% <= 10%
        'risk ke 0.5': _risk_row(ke, 0.5, 0.0, 0.0, 0.0),         # certified, reached by none
    }
    ok = 'calibrated'
    pooled = dict(n=46, n_needed=114, source='keep_nothing')
    q = dict(methods=methods, risk_calibration={
        'risk flr 0.02': dict(mode='pixel', groups=[pooled]),
        'risk flr 0.1': dict(mode='pixel', groups=[dict(n=46, n_needed=22, source=ok)]),
        'risk ke 0.1': dict(mode='pixel', groups=[dict(n=46, n_needed=9, source=ok)]),
        'risk ke 0.5': dict(mode='pixel', groups=[dict(n=46, n_needed=1, source=ok,
                                                       threshold=1.0)])})
    methods['risk flr class 0.1'] = dict(_risk_row(flr, 0.1, 0.2, 0.98, 0.004), mode='class',
                                         per_class_precision={'x': 0.99, 'y': 0.0})
    q['risk_calibration']['risk flr class 0.1'] = dict(mode='class', groups=[
        dict(n=46, n_needed=22, source=ok),
        dict(name='x', n=40, n_needed=22, source=ok, threshold=0.9, kept_ratio=0.5),
        dict(name='y', n=30, n_needed=22, source=ok, threshold=0.94, kept_ratio=0.0)])
    text = '\n'.join(report_risk.risk_findings(q))
    assert ('risk flr class 0.1: classes below 1 - target in precision**: y (t 0.940: '
            'precision 0.0%; on the labeled images t keeps 0% of the pixels labeled y)') in text
    assert 'Keep nothing** (2 of 5 risk rows): risk flr 0.02 (46 labeled images, 114 needed' \
        in text
    assert 'risk ke 0.5 (t = 1.0000 certified on 46 labeled images, but no unlabeled pixel' in text
    assert 'Within the target on the unlabeled images** (2 rows): risk ke 0.1: keeps 70.0%' \
        in text and 'kept-and-wrong share of the labeled pixels 8.00% (target 10%)' in text
    assert 'Above the target on the unlabeled images** (1 rows): risk flr 0.1' in text
    assert 'error of the kept labels 15.00% (target 10%)' in text


def test_risk_report_from_evaluate(tmp_path):
    import report_risk
    probs, gt = _random_case(2, n=8)
    data = {f'img{i}': (probs[i], gt[i]) for i in range(8)}
    out = quality.evaluate(data.__getitem__, [f'img{i}' for i in range(4)],
                           [f'img{i}' for i in range(4, 8)], CLASSES, alphas=(0.1, ),
                           taus=(0.5, ), risk_targets=(0.05, 0.5))
    out['labeled'], out['unlabeled'] = 4, 4
    text = open(report_risk.write_risk(out, str(tmp_path), '1-8')).read()
    assert '## What the numbers show' in text
    # 4 labeled images: conformal risk control needs ceil(1 / 0.05) - 1 = 19 at target 0.05
    assert 'risk kept_error pixel, target 0.05 (4 labeled images, 19 needed' in text
    assert out['methods']['risk kept_error pixel, target 0.05']['kept_ratio'] == 0


def _fake_training(calls, iters=4):
    """A stand-in for tools/train.py: records the command and writes what mmengine would."""
    def run_logged(cmd, log_path, log, progress_seconds):
        calls.append(cmd)
        work_dir = cmd[cmd.index('--work-dir') + 1]
        start = 2 if '--resume' in cmd else 0
        run = osp.join(work_dir, f'2026010{len(calls)}_000000', 'vis_data')
        os.makedirs(run, exist_ok=True)
        with open(osp.join(run, 'scalars.json'), 'w') as f:
            for it in range(start + 2, iters + 1, 2):
                f.write(json.dumps(dict(mIoU=float(it), step=it)) + '\n')
        with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(work_dir, f'iter_{iters}.pth'))
    return run_logged


def test_an_unfinished_run_resumes_and_reads_every_sitting(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(training, '_run_logged', _fake_training(calls))
    wd = str(tmp_path / 'run')
    opts = {'train_cfg.max_iters': 4, 'randomness.seed': 0}
    # a first sitting stopped after iteration 2: its options and checkpoint are there
    os.makedirs(osp.join(wd, '20260100_000000', 'vis_data'))
    with open(osp.join(wd, '20260100_000000', 'vis_data', 'scalars.json'), 'w') as f:
        f.write(json.dumps(dict(mIoU=2.0, step=2)) + '\n')
    training.dump_json({k: training._format(v) for k, v in opts.items()},
                   osp.join(wd, 'options.json'))
    with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(wd, 'iter_2.pth'))
    out = training.run('cfg.py', opts, wd, {}, log=lambda m: None)
    assert '--resume' in calls[-1] and out['resumed']
    assert out['val_curve'] == {'2': 2.0, '4': 4.0} and out['mIoU'] == 4.0
    # finished: read, not trained again
    assert training.run('cfg.py', opts, wd, {}, log=lambda m: None) == out
    assert len(calls) == 1
    # other options: the old work dir is moved aside and the run starts afresh
    out2 = training.run('cfg.py', dict(opts, **{'randomness.seed': 1}), wd, {},
                        log=lambda m: None)
    assert '--resume' not in calls[-1] and not out2['resumed']
    assert osp.exists(osp.join(wd + '.old', 'result.json'))


def test_progress_line_shows_the_counter_and_the_remaining_time(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text(
        'x\n11/26 01:10:00 - mmengine - INFO - Iter(train) [ 150/2000]  base_lr: 9.3e-03 '
        'lr: 9.3e-03  eta: 0:10:02  time: 0.3256  data_time: 0.0100  memory: 0  loss: 0.9\n')
    assert training.last_progress(str(log)) == \
        'Iter(train) [ 150/2000] eta: 0:10:02 time: 0.3256 s/it'


def test_length_is_where_later_iterations_stop_paying():
    import convergence
    curves = {0: {250: 30.0, 500: 40.0, 750: 44.0, 1000: 45.0},
              1: {250: 32.0, 500: 41.0, 750: 42.0, 1000: 44.0},
              2: {250: 31.0, 500: 39.0, 750: 43.0, 1000: 46.0}}
    length, rows = convergence.choose_length(curves)
    # mean 43.0 at 750 (sd 1.0), best later mean 45.0: 2 points > 1 sd; at 1000 nothing later
    assert [r[0] for r in rows] == [250, 500, 750, 1000]
    assert length == 1000
    curves[1][750] = 45.0  # mean 44.0, sd 1.0; 45.0 - 44.0 <= 1.0
    assert convergence.choose_length(curves)[0] == 750


# --- the report of the seeded benchmark (report.py, report_training.py) -----------------------
SEEDS = [0, 1, 2]
REPORT_ROWS = ['supervised', 'raw', 'conformal_pixel', 'risk', 'conformalsam', 'unimatch']


def _run_result(row, seed, val, selection, group=None, spi=0.5, calibration=None):
    # '50' sorts after '200' as text: the final number is the largest iteration's
    r = dict(row=row, split='1-8', seed=seed, group=group, mIoU=selection,
             val={'50': 0.0, '200': val}, val_curve={'200': selection},
             seconds_per_iter=dict(all=spi, stage1=None, stage2=None), wall_seconds=360.0)
    if calibration:
        r['calibration'] = calibration
    return r


def _fake_quality():
    probs, gt = _random_case(3, n=8)
    data = {f'img{i}': (probs[i], gt[i]) for i in range(8)}
    out = quality.evaluate(data.__getitem__, [f'img{i}' for i in range(4)],
                           [f'img{i}' for i in range(4, 8)], CLASSES, alphas=(0.05, 0.2),
                           taus=(0.5, 0.9), risk_targets=(0.05, 0.1))
    out = json.loads(json.dumps(out))      # as results.json holds it
    out.update(labeled=4, unlabeled=4, seconds=60.0)
    strong, weak = out, json.loads(json.dumps(out))
    risk = 'risk false_label_rate pixel, target 0.05'
    strong['methods'][risk].update(kept_ratio=0.5, precision=0.97)
    risk = 'risk false_label_rate pixel, target 0.1'    # the weak annotator's target*
    weak['methods'][risk].update(kept_ratio=0.4, precision=0.88)
    weak['risk_calibration'][risk]['groups'][0].update(
        threshold=0.93, risk=0.03, risk_interval=[0.01, 0.045], source='calibrated')
    strong['methods']['conformal pixel, alpha 0.05'].update(
        kept_ratio=0.99, precision=0.755, per_class_share=dict(a=0.28, b=0.7, c=0.02))
    return {'cross_sequence_strong': strong, 'cross_sequence_weak': weak,
            'simulated_gap0.25': json.loads(json.dumps(out))}


def _fake_results(tmp_path, wall_seconds=30.0):
    import plan
    cal = dict(conformal_q=0.62, conformal_kept_ratio=0.98, conformal_holdout_coverage=0.95)
    training = []
    for seed, (sup, raw, cp, raw_weak, uni) in enumerate(
            [(40, 38, 39, 30, 43), (42, 41, 40, 31, 42), (44, 40, 41, 35, 47)]):
        training += [_run_result('supervised', seed, sup, 50 + seed, spi=0.4),
                     _run_result('raw', seed, raw, 49, 'strong', spi=0.6),
                     _run_result('conformal_pixel', seed, cp, 49, 'strong', spi=0.6,
                                 calibration=cal),
                     _run_result('raw', seed, raw_weak, 40, 'weak', spi=0.6),
                     _run_result('unimatch', seed, uni, 51, spi=2.0)]
    training[1]['mIoU'] = 52.0 + 3   # selection means: supervised 51.0, raw (strong) 50.0
    training.append(_run_result('conformalsam', 0, 45, 52, 'strong', spi=0.7))
    summary = dict(
        protocol=dict(iters=200, lr=0.01, annotators={'strong': 'no/such/strong_cache',
                                                      'weak': 'no/such/weak_cache'}),
        seeds=SEEDS, splits=['1-8'], rows=REPORT_ROWS, quality_split='1-8',
        planned=len(plan.make_plan(SEEDS, ['1-8'], REPORT_ROWS)),
        alpha_choices={'1-8': {
            'strong': dict(alpha=0.1, min_removed=0.01,
                           table=[dict(alpha=0.05, q=0.9, kept=1.0),
                                  dict(alpha=0.1, q=0.5, kept=0.985)]),
            'weak': dict(alpha=None, min_removed=0.01,
                         table=[dict(alpha=0.05, q=0.9, kept=1.0)])}},
        risk_target_choices={'1-8': {
            'strong': dict(risk_target=0.05, table=[
                dict(target=0.05, threshold=0.9, n=46, n_needed=45)]),
            'weak': dict(risk_target=0.1, table=[
                dict(target=0.05, threshold=None, n=46, n_needed=45),
                dict(target=0.1, threshold=0.97, n=46, n_needed=22)])}},
        tau_choices={'1-8': None},
        caches={g: dict(bytes=2 ** 30, entries=367, codec='zlib', topk=None)
                for g in ('strong', 'weak')},
        annotator_seconds={'strong': 0.0, 'weak': 0.0}, wall_seconds=wall_seconds, threads=2)
    results = dict(summary=summary, quality=_fake_quality(), training=training)
    with open(tmp_path / 'results.json', 'w') as f:
        json.dump(results, f)
    return results


def _md_line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_report_table_has_the_seed_spreads_and_paired_differences(tmp_path):
    import report
    _fake_results(tmp_path)
    text = open(report.write(str(tmp_path), str(tmp_path / 'out'), ([], []))).read()
    # supervised 40, 42, 44 (val at iteration 200): mean 42.0, sample std 2.0;
    # selection 50, 51, 52 -> 51.0
    assert _md_line(text, '| Supervised only') == \
        '| Supervised only (labeled images) | 42.0 ± 2.0 (3) | 51.0 | - |'
    # raw (strong) 38, 41, 40: mean 39.67, std 1.53; minus supervised by seed: -2, -1, -4
    # (mean -2.33, std 1.53); selection 55, 49, 49 -> 51.0
    assert _md_line(text, '| + raw annotator labels (strong)') == \
        '| + raw annotator labels (strong) | 39.7 ± 1.5 (3) | 51.0 | -2.3 ± 1.5 (3) |'
    # one seed: no std, marked
    assert _md_line(text, "| ConformalSAM (Stage I + II), the paper's filter (strong)") == \
        "| ConformalSAM (Stage I + II), the paper's filter (strong) | 45.0 (1) † | 52.0 | " \
        '+5.0 (1) † |'
    # planned, not finished: a line with no number
    assert _md_line(text, '| + risk-controlled labels') .endswith('(strong) | - | - | - |')
    assert 'alpha* = 0.1 (keeps 98.5% of the labeled pixels)' in text
    assert 'weak: none of the grid (0.05) removes enough' in text
    assert '| + conformal filtering, pixel mode, alpha 0.05 (the paper\'s) (strong) | q 0.620 ' \
        '| 98.0 | 95.0 | - |' in text


def test_report_states_the_sittings_time_only_when_it_trained(tmp_path):
    import report
    _fake_results(tmp_path)
    text = open(report.write(str(tmp_path), str(tmp_path / 'out'), ([], []))).read()
    assert 'The latest sitting of run.py took 0.5 min on 2 CPU threads.' in text
    _fake_results(tmp_path, wall_seconds=None)   # --report-only trains nothing
    text = open(report.write(str(tmp_path), str(tmp_path / 'out'), ([], []))).read()
    assert 'The latest sitting' not in text


def test_report_says_how_many_runs_are_finished(tmp_path):
    import plan
    import report
    results = _fake_results(tmp_path)
    text = open(report.write(str(tmp_path), str(tmp_path / 'out'), ([], []))).read()
    planned = len(plan.make_plan(SEEDS, ['1-8'], REPORT_ROWS))
    assert planned > 16
    assert (f'**16 of {planned} runs finished; rows with fewer than 3 seeds are marked †.**'
            in text)
    assert 'Split 1/16 is not in this page' in text
    assert len(results['training']) == 16
    assert '[camvid_convergence.md](camvid_convergence.md)' in text


def test_effect_verdicts_need_every_seed_and_a_mean_beyond_the_spread():
    from report_effects import verdict
    assert verdict({0: -2.0, 1: -1.0, 2: -4.0}, SEEDS, -1) == ('holds', '')
    # same sign everywhere, but the mean (1.1) within the std (1.65)
    assert verdict({0: 0.1, 1: 0.2, 2: 3.0}, SEEDS, 1) == \
        ('does not hold', '|mean| 1.10 <= std 1.65')
    assert verdict({0: 1.0, 1: -1.0, 2: 1.0}, SEEDS, 1) == \
        ('does not hold', 'seed 1 has the other sign (or 0)')
    assert verdict({0: 5.0}, SEEDS, 1) == ('not measured yet', '1 of 3 seeds')
    assert verdict({0: 5.0}, [0], 1) == ('not measured yet', 'one seed gives no spread')


def test_report_effects_state_each_verdict_with_its_evidence(tmp_path):
    import report
    _fake_results(tmp_path)
    text = open(report.write(str(tmp_path), str(tmp_path / 'out'), ([], []))).read()
    assert _md_line(text, '| raw <= supervised | + raw annotator labels (strong) - ') == (
        '| raw <= supervised | + raw annotator labels (strong) - Supervised only (labeled '
        'images) | -2.0 (seed 0), -1.0 (seed 1), -4.0 (seed 2) | -2.3 ± 1.5 | holds |')
    filtered = _md_line(text, '| filtered > raw | + conformal filtering, pixel mode, alpha 0.05')
    assert filtered.endswith('| +0.3 ± 1.2 | does not hold (seed 1 has the other sign (or 0)) |')
    assert _md_line(text, '| Stage II > Stage I | ConformalSAM').endswith(
        '| not measured yet (1 of 3 seeds) |')
    # unimatch - supervised: +3, 0, +3
    assert _md_line(text, '| host > supervised | UniMatch - ').endswith(
        '| does not hold (seed 1 has the other sign (or 0)) |')
    # the evidence of the filter that does not beat raw: its labels' precision, its calibration
    evidence = _md_line(text, '- filtered > raw, + conformal filtering, pixel mode')
    assert 'its labels (conformal pixel, alpha 0.05) keep 99.0% of the unlabeled pixels of ' \
        'split 1/8 at precision 75.5%, of which 70% b, 28% a;' in evidence   # c: < 5%
    assert "its runs' calibration logged q 0.620, kept 98.0%" in evidence
    assert 'on the selection set the same difference is' in evidence
    # the risk filter: precision against 1 - target, per annotator
    assert '| strong | 0.05 | 50.0 | 97.0 | 95 | holds |' in text
    assert ('| weak | 0.1 | 40.0 | 88.0 | 90 | does not hold (labeled images: t = 0.930 '
            'certified on 4 images, estimated false-label rate 3.00% [1.00, 4.50]) |') in text
    assert ('strong: target* = 0.05 (0.05: t = 0.900); weak: target* = 0.1 (0.05: none '
            'certified, 0.1: t = 0.970).') in text
    assert 'when every seed\'s difference (same seed, val mIoU) has the expected sign and the ' \
        'mean difference exceeds the standard deviation' in text


def test_report_write_makes_the_page_and_its_pictures(tmp_path):
    import report
    _fake_results(tmp_path)
    out = tmp_path / 'out'
    text = open(report.write(str(tmp_path), str(out), ([], []))).read()
    for png in ('camvid_miou.png', 'camvid_precision_vs_kept.png'):
        assert (out / png).stat().st_size > 1000 and f']({png})' in text
    for heading in ('## Semi-supervised results', '## Expected effects', '### strong annotator',
                    '### weak annotator', '## Pseudo-label quality', '## Cost'):
        assert heading in text
    # cost: supervised 0.4 s/it; UniMatch 2.0 s/it = 5x; 16 runs of 6 min = 1.6 h
    assert '| Supervised only | 3 | 0.400 | - | - | 1.00x | 0.30 |' in text
    assert '| UniMatch | 3 | 2.000 | - | - | 5.00x | 0.30 |' in text
    assert 'Finished runs: 16, 1.6 h of wall time' in text
    assert "- strong: 1024 MiB for 367 images (2.79 MiB per image; every class, codec 'zlib')" \
        in text
    # the class mix of the kept labels, after the ground truth's
    mix = text[text.index("What the kept labels are"):]
    assert _md_line(mix, '| ground truth |').count('|') == len(CLASSES) + 2
    assert _md_line(mix, '| conformal pixel, alpha 0.05 |') == \
        '| conformal pixel, alpha 0.05 | 28.0 | 70.0 | 2.0 |'
    # the example picture needs the annotator cache, which this machine does not have here
    assert not (out / 'camvid_pseudo_labels.png').exists()


def test_annotator_section_names_the_weights_every_cache_is_made_from(tmp_path):
    import report_annotators
    cache = tmp_path / 'strong'
    cache.mkdir()
    (cache / 'cache_info.json').write_text(json.dumps(dict(
        command='python tools/train_camvid_annotator.py --work-dir w',
        evaluation=dict(mIoU=0.4, aAcc=0.8, top_k_coverage={'1': 0.8}, ece=0.03),
        model=dict(checkpoint='benchmarks/camvid/annotators/cross_sequence_strong.pth',
                   checkpoint_sha1='0123456789abcdef'))))
    text = report_annotators.section({'strong': str(cache)}, str(tmp_path))
    assert 'strong `benchmarks/camvid/annotators/cross_sequence_strong.pth` (0123456789ab)' \
        in text
    assert '| 40.0 | 80.0 | 80.0 / - / - / - | 3.0 |' in text


def test_readme_table_is_the_reports_table_between_its_markers(tmp_path):
    import report_readme
    results = _fake_results(tmp_path)
    readme = tmp_path / 'README.md'
    readme.write_text(f'# title\n\nbefore\n{report_readme.START}\nold table\n{report_readme.END}\n'
                      'after\n')
    for _ in range(2):   # rewriting keeps one table
        report_readme.update(str(readme), results['summary'], results['training'])
    text = readme.read_text()
    assert text.startswith('# title\n\nbefore\n') and text.endswith(f'{report_readme.END}\nafter\n')
    assert 'old table' not in text and text.count('| method |') == 1
    planned = results['summary']['planned']
    assert f'**16 of {planned} runs finished**' in text
    # the same cells as the report's headline table (selection column left out)
    assert '| Supervised only (labeled images) | 42.0 ± 2.0 (3) | - |' in text
    assert '| + raw annotator labels (strong) | 39.7 ± 1.5 (3) | -2.3 ± 1.5 (3) |' in text
    assert '| + risk-controlled' not in text   # planned rows with no finished run are left out
    assert ('Expected effects (seed by seed, beyond the spread): holds: 2, does not hold: 2, '
            'not measured yet: 7; each with its evidence in the report.') in text
    readme.write_text('no markers\n')
    with pytest.raises(ValueError, match='camvid-results'):
        report_readme.update(str(readme), results['summary'], results['training'])


def test_prediction_picture_shows_kept_predictions_and_names_runs_without_any(tmp_path,
                                                                              monkeypatch):
    import cv2
    import numpy as np
    import report
    import report_predictions
    import training as rows
    results = _fake_results(tmp_path)
    val, labels = tmp_path / 'val', tmp_path / 'val_labels'
    val.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(val / f'0016E5_{i:05d}.jpg'), rng.integers(0, 255, (12, 16, 3), np.uint8))
        cv2.imwrite(str(labels / f'0016E5_{i:05d}.png'), rng.integers(0, 11, (12, 16), np.uint8))
    monkeypatch.setattr(report_predictions, 'VAL', str(val))
    monkeypatch.setattr(report_predictions, 'VAL_LABELS', str(labels))
    stems = report_predictions.val_stems()
    assert stems == ['0016E5_00001', '0016E5_00002']
    for row, group in (('supervised', None), ('raw', 'strong')):
        kept = osp.join(rows.run_dir(str(tmp_path), report.report_training.ROW[row], '1-8', 0,
                                     group), 'val_predictions')
        os.makedirs(kept)
        for stem in stems:   # kept predictions are read, no network is loaded
            cv2.imwrite(osp.join(kept, f'{stem}.png'), np.full((12, 16), 3, np.uint8))
    out = tmp_path / 'out'
    out.mkdir()
    text = report.predictions_section(results['summary'], results['training'], str(tmp_path),
                                      str(out))
    picture = cv2.imread(str(out / 'camvid_predictions.png'))
    # image, ground truth, supervised, raw: 4 panels of 8 px and 3 gaps
    assert picture.shape[1] == 4 * 8 + 3 * 4
    assert '![predictions on val](camvid_predictions.png)' in text
    # conformal_pixel (strong) and conformalsam (strong) finished seed 0 but kept nothing
    lost = _md_line(text, 'Not pictured')
    assert '1-8/seed0/strong/conformal_pixel' in lost and '1-8/seed0/strong/conformalsam' in lost
    assert 'Supervised' not in lost


def test_bn_comparison_pairs_seeds_and_compares_with_the_seed_spread():
    import report_convergence as rc
    groups = {('selection', 0.1): {0: {250: 30.0, 1750: 40.0}, 1: {250: 32.0, 1750: 41.0},
                                   2: {250: 34.0, 1750: 42.0}},
              ('val', 0.1): {0: {250: 40.0, 1750: 50.0}, 1: {250: 40.0, 1750: 53.0},
                             2: {250: 40.0, 1750: 56.0}},
              ('selection', None): {0: {250: 26.0, 1750: 38.0}},
              ('val', None): {0: {250: 41.0, 1750: 47.0}}}
    stats = {k: {it: (m, sd) for it, m, sd, _ in rc._stats(v)} for k, v in groups.items()}
    text = '\n'.join(rc.bn_comparison(groups, stats, 1750))
    assert 'selection mIoU of 0.1 minus 0.01, seed 0: 250: +4.0, 1750: +2.0.' in text
    assert 'val mIoU of 0.1 minus 0.01, seed 0: 250: -1.0, 1750: +3.0.' in text
    # std of 40, 41, 42 is 1.0 (2.0 is beyond it); of 50, 53, 56 is 3.0 (3.0 is within it)
    assert ('At the chosen length (1750), seed 0: selection +2.0 (beyond the BN 0.1 seeds\' '
            'std 1.0), val +3.0 (within the BN 0.1 seeds\' std 3.0).') in text


def test_cost_is_the_median_over_runs_so_one_slowed_run_moves_it_little():
    import report_training as rt
    training = [_run_result('supervised', s, 40, 50, spi=0.5) for s in SEEDS]
    training += [_run_result('raw', s, 40, 50, 'strong', spi=spi)
                 for s, spi in zip(SEEDS, (1.0, 1.1, 6.5))]   # seed 2 shared the machine
    text = rt.cost_section(dict(caches={}), training, {})
    cells = _md_line(text, '| Stage I only').split(' | ')
    assert cells[1:3] == ['3', '1.100'] and cells[5] == '2.20x'   # the mean would be 2.867


def test_cost_compares_the_speeds_of_one_machine():
    import report_training as rt
    old = [_run_result('supervised', s, 40, 50, spi=0.5) for s in SEEDS]   # no machine recorded
    new = [dict(_run_result('raw', s, 40, 50, 'strong', spi=0.4), machine='AMD EPYC, 2 cores')
           for s in SEEDS + [3]]
    text = rt.cost_section(dict(caches={}), old + new, {})
    # the four runs of the faster machine are the table; no supervised run there: no ratio
    assert _md_line(text, '| Stage I only').split(' | ')[1:3] == ['4', '0.400']
    assert '| Supervised only' not in text
    assert ('The runs of one machine only: AMD EPYC, 2 cores (4 of the 7 finished runs; the '
            'others: 3 on a machine not recorded). No supervised run on it yet') in text
    new += [dict(_run_result('supervised', 0, 40, 50, spi=0.2), machine='AMD EPYC, 2 cores')]
    text = rt.cost_section(dict(caches={}), old + new, {})
    assert _md_line(text, '| Stage I only').split(' | ')[5] == '2.00x'


def test_cost_ratio_on_a_machine_without_supervised_runs_uses_its_timing_run():
    import report_training as rt
    old = [_run_result('supervised', s, 40, 50, spi=0.5) for s in SEEDS]   # no machine recorded
    new = [dict(_run_result('raw', s, 40, 50, 'strong', spi=0.4), machine='AMD EPYC, 2 cores')
           for s in SEEDS + [3]]
    timed = dict(caches={}, supervised_timing={'AMD EPYC, 2 cores': 0.25, 'Other, 8 cores': 0.1})
    text = rt.cost_section(timed, old + new, {})
    assert _md_line(text, '| Stage I only').split(' | ')[5] == '1.60x'
    assert ('the ratio\'s supervised speed (0.250 s / iter) is a 200-iteration timing run of the '
            'supervised row there (logs/camvid/speed/)') in text
    # another machine's timing run is not this machine's denominator
    text = rt.cost_section(dict(caches={}, supervised_timing={'Other, 8 cores': 0.1}),
                           old + new, {})
    assert _md_line(text, '| Stage I only').split(' | ')[5] == '-'
    # a supervised run of the benchmark on the machine comes before the timing run
    new += [dict(_run_result('supervised', 0, 40, 50, spi=0.2), machine='AMD EPYC, 2 cores')]
    text = rt.cost_section(timed, old + new, {})
    assert _md_line(text, '| Stage I only').split(' | ')[5] == '2.00x'
    assert 'timing run' not in text


def test_machine_is_the_cpu_model_and_the_core_count(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n')
    assert training.machine(str(cpuinfo)) == f'AMD EPYC 7B13, {os.cpu_count()} cores'
