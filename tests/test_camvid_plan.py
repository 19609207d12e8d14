"""The CamVid benchmark's plan and choices (benchmarks/camvid/plan.py, choices.py, run.py)."""
import json
import os
import os.path as osp
import shutil
import sys

import pytest
import torch

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks', 'camvid'))
import choices  # noqa: E402
import derived  # noqa: E402
import inputs  # noqa: E402
import plan  # noqa: E402
import run as bench  # noqa: E402
import speed  # noqa: E402
import training  # noqa: E402


def test_the_plan_puts_complete_comparisons_first():
    runs = plan.make_plan([0, 1, 2], ['1-8'])
    assert len(runs) == len(set(runs))
    first = runs[:15]
    assert {(r.row, r.seed) for r in first} == {
        (row, s) for row in plan.TIERS[0] for s in (0, 1, 2)}
    assert all(r.group == ('strong' if plan.ROW[r.row].conformalsam else None) for r in first)
    names = [r.name for r in runs]
    # the threshold candidates (seed 0) run before any threshold_best run
    cands = [i for i, r in enumerate(runs) if r.tau is not None or
             (r.row == 'threshold_0.9' and r.seed == 0 and r.group == 'strong')]
    best = [i for i, r in enumerate(runs) if r.row == 'threshold_best' and r.tau is None]
    assert len(cands) == len(training.TAU_CANDIDATES) and max(cands) < min(best)
    assert names.count('threshold_0.9') == 3 + 3   # strong and weak, 3 seeds each
    weak = {r.row for r in runs if r.group == 'weak'}
    assert weak == set(plan.WEAK_ROWS)
    assert runs[-1].row == 'allspark_conformalsam'
    # each seed's hosts follow the supervised row of their recipe
    index = {(r.row, r.seed): i for i, r in enumerate(runs)}
    assert all(index['supervised_hosts_recipe', s] < index['unimatch', s] for s in (0, 1, 2))


def test_estimates_use_measured_speeds_when_there_are_some():
    run = plan.Run('unimatch', '1-8', 0)
    assert plan.estimate(run, 100) == 100 * plan.SECONDS_PER_ITER['UniMatch'] + plan.EVAL_SECONDS
    assert plan.estimate(run, 100, {'UniMatch': 1.0}) == 100 + plan.EVAL_SECONDS
    # a machine twice as fast as the defaults on what it measured: unmeasured classes too
    half = {'none': plan.SECONDS_PER_ITER['none'] / 2,
            'stage_one': plan.SECONDS_PER_ITER['stage_one'] / 2}
    assert plan.speed_factor(half) == 0.5
    assert plan.estimate(run, 100, half) == pytest.approx(
        50 * plan.SECONDS_PER_ITER['UniMatch'] + plan.EVAL_SECONDS)
    assert plan.speed_factor({}) == 1.0
    assert plan.cost_class(plan.Run('risk', '1-8', 0, 'strong')) == 'stage_one'


def test_measured_speeds_prefer_this_machines_runs():
    def result(row, s, machine):
        return {'row': row, 'split': '1-8', 'seed': 0, 'group': 'strong',
                'seconds_per_iter': {'all': s}, 'machine': machine}
    results = [result('raw', 1.0, 'slow'), result('raw', 0.4, 'fast'),
               result('supervised', 0.5, 'slow')]
    assert bench.measured_speeds(results, 'fast') == {'stage_one': 0.4}
    # no run made here yet: every machine's runs
    assert bench.measured_speeds(results, 'new') == {'stage_one': 0.7, 'none': 0.5}


def _source(images=2, pixels=100):
    """gt = class 0 everywhere; 80% of the pixels p0 = 0.95, 20% p0 = 0.3 (argmax wrong)."""
    p0 = torch.full((pixels, ), 0.95)
    p0[:pixels // 5] = 0.3
    probs = torch.stack([p0, 1 - p0]).reshape(2, 10, pixels // 10)
    gt = torch.zeros(10, pixels // 10, dtype=torch.long)
    return (lambda stem: (probs, gt)), [f'img{i}' for i in range(images)]


def test_the_smallest_alpha_that_filters_by_hand():
    # true-class scores: 160 x 0.05 and 40 x 0.7 (n = 200). q(alpha) is the
    # ceil(201 (1 - alpha))-th smallest: 0.7 up to alpha 0.2 (sets {0} or {0, 1}: everything
    # kept), about 0.05 from alpha 0.3 on (the 0.3-pixels' sets are empty: 20% removed)
    source, stems = _source()
    out = choices.choose_alpha(source, stems, 2)
    table = {row['alpha']: row for row in out['table']}
    assert all(table[a]['kept'] == 1.0 for a in (0.01, 0.05, 0.1, 0.2))
    assert table[0.3]['kept'] == pytest.approx(0.8)
    assert out['alpha'] == 0.3
    # removing 25% is more than any alpha of the grid does here
    assert choices.choose_alpha(source, stems, 2, min_removed=0.25)['alpha'] is None


def test_tau_is_the_best_on_the_selection_set_ties_to_the_smaller():
    assert choices.choose_tau({0.5: 40.0, 0.7: 42.0, 0.9: 42.0, 0.95: 30.0}) == 0.7
    results = [dict(row='threshold_0.9', split='1-8', group='strong', seed=0, mIoU=41.0),
               dict(row='threshold_candidate_0.5', split='1-8', group='strong', seed=0,
                    mIoU=43.0),
               dict(row='threshold_candidate_0.7', split='1-8', group='strong', seed=0,
                    mIoU=40.0)]
    assert bench.choose_tau(results, '1-8') is None   # 0.95 has not finished
    results.append(dict(row='threshold_candidate_0.95', split='1-8', group='strong', seed=0,
                        mIoU=39.0))
    assert bench.choose_tau(results, '1-8') == 0.5
    assert bench.choose_tau(results, '1-16') is None


def test_chosen_values_reach_the_rows_options():
    protocol = dict(iters=10, lr=0.01, labeled_batch=4, log_interval=5,
                    annotators=dict(plan.ANNOTATORS))
    ch = {'strong': dict(tau=0.7, alpha=0.3), 'weak': dict(tau=None, alpha=0.2)}
    best = training.row_options(plan.ROW['threshold_best'], '1-8', 0, protocol, 'strong', ch)
    assert best['model.pseudo_label_head.confidence_threshold'] == 0.7
    assert best['train_dataloader.dataset.annotator_cache'] == plan.ANNOTATORS['strong']
    cp = training.row_options(plan.ROW['conformal_pixel_filtering'], '1-8', 0, protocol, 'weak',
                              ch)
    assert cp['model.pseudo_label_head.alpha'] == 0.2
    assert cp['train_dataloader.dataset.annotator_cache'] == plan.ANNOTATORS['weak']


def test_threads_are_the_free_cores(monkeypatch, tmp_path):
    monkeypatch.delenv('CAMVID_BENCHMARK_THREADS', raising=False)
    monkeypatch.setattr(training.os, 'cpu_count', lambda: 8)
    monkeypatch.setattr(training, 'idle_share', lambda window: 0.74)
    assert training.free_cores() == 6          # round(8 x 0.74)
    monkeypatch.setattr(training, 'idle_share', lambda window: 0.0)
    assert training.free_cores() == 1
    # without /proc/stat: cores minus the 1-minute load average
    monkeypatch.setattr(training, 'idle_share', lambda window: None)
    monkeypatch.setattr(training.os, 'getloadavg', lambda: (2.6, 0, 0))
    assert training.free_cores() == 5
    monkeypatch.setenv('CAMVID_BENCHMARK_THREADS', '3')
    assert training.free_cores() == 3


def test_idle_share_reads_the_idle_and_iowait_time(tmp_path, monkeypatch):
    stat = tmp_path / 'stat'
    lines = iter(['cpu  100 0 50 800 50 0 0 0 0 0\n',      # total 1000, idle 850
                  'cpu  400 0 100 1300 100 0 0 0 0 0\n'])  # total 1900, idle 1400
    monkeypatch.setattr(training.time, 'sleep', lambda s: stat.write_text(next(lines)))
    stat.write_text(next(lines))
    assert training.idle_share(1.0, str(stat)) == pytest.approx(550 / 900)
    assert training.idle_share(1.0, str(tmp_path / 'missing')) is None


def test_kept_logs_hold_the_result_config_and_the_trimmed_log(tmp_path):
    wd = tmp_path / 'run'
    wd.mkdir()
    (wd / 'result.json').write_text(json.dumps(dict(mIoU=40.0)))
    (wd / 'deeplabv3plus_effl0_camvid-1-8.py').write_text("model = dict(type='X')\n")
    (wd / 'train.log').write_text(
        '$ python tools/train.py cfg.py\n'
        'model = dict(a huge config dump)\n'
        '11/26 01:10:00 - mmengine - INFO - Iter(train) [ 50/2000]  lr: 1e-2  loss: 0.9\n'
        '| class | IoU |\n'
        '11/26 01:12:00 - mmengine - INFO - Iter(val) [62/62]    mIoU: 40.0\n')
    training.keep_logs(str(wd), str(tmp_path / 'kept'))
    kept = (tmp_path / 'kept' / 'train.log').read_text()
    assert 'huge config dump' not in kept
    assert kept.count('\n') == 4 and 'Iter(train) [ 50/2000]' in kept
    assert (tmp_path / 'kept' / 'config.py').read_text() == "model = dict(type='X')\n"
    assert json.loads((tmp_path / 'kept' / 'result.json').read_text()) == dict(mIoU=40.0)


def test_a_finished_run_kept_beside_the_report_is_read_not_trained(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError('trained a run whose result is kept')
    monkeypatch.setattr(training, '_run_logged', no_training)
    opts = {'train_cfg.max_iters': '4', 'randomness.seed': '0'}
    work_root, out = str(tmp_path / 'work'), str(tmp_path / 'out')
    run = plan.make_plan([0], ['1-8'], ['raw'])[0]
    wd, kept = bench.run_work_dir(run, work_root), bench.kept_dir(run, work_root, out)
    os.makedirs(osp.join(wd, 'val_predictions'))
    training.dump_json(dict(row='raw', mIoU=40.0, options=opts, annotator='a1'),
                       osp.join(wd, 'result.json'))
    (tmp_path / 'work').joinpath(osp.relpath(wd, work_root), 'val_predictions',
                                 'a.png').write_bytes(b'png')
    bench.keep_logs([run], work_root, out)
    assert open(osp.join(kept, 'val_predictions', 'a.png'), 'rb').read() == b'png'
    shutil.rmtree(work_root)   # a fresh machine: only what is kept beside the report
    annotators = {'strong': 'a1', 'weak': 'w1'}   # the sha1 of each annotator's kept weights
    assert bench.finished(run, work_root, annotators) == 'to run'
    bench.restore_kept([run], work_root, out)
    assert bench.finished(run, work_root, annotators) == 'done'
    assert open(osp.join(wd, 'val_predictions', 'a.png'), 'rb').read() == b'png'
    assert training.run('cfg.py', opts, wd, {}, log=lambda m: None,
                        result=dict(annotator='a1'))['mIoU'] == 40.0
    assert [r['mIoU'] for r in bench.collect([run], work_root, annotators)] == [40.0]
    # a work dir where a run has started is not overwritten by the kept result
    other = str(tmp_path / 'started')
    training.dump_json(opts, osp.join(other, 'options.json'))
    assert not training.restore(kept, other)
    assert not osp.exists(osp.join(other, 'result.json'))
    # nothing kept: nothing restored
    assert not training.restore(str(tmp_path / 'nothing'), str(tmp_path / 'fresh'))


def test_the_supervised_row_is_timed_once_per_machine_and_kept(tmp_path, monkeypatch):
    calls = []

    def fake_training(cmd, log_path, log, progress_seconds):
        calls.append(cmd)
        wd = cmd[cmd.index('--work-dir') + 1]
        os.makedirs(osp.join(wd, 'run', 'vis_data'), exist_ok=True)
        with open(osp.join(wd, 'run', 'vis_data', 'scalars.json'), 'w') as f:
            for it, t in ((50, 2.0), (100, 0.3), (150, 0.5), (200, 0.4)):
                f.write(json.dumps(dict(iter=it, time=t, step=it)) + '\n')
            f.write(json.dumps(dict(mIoU=10.0, step=200)) + '\n')
    monkeypatch.setattr(training, '_run_logged', fake_training)
    monkeypatch.setattr(training, 'machine', lambda: 'CPU X, 2 cores')
    work_root, kept = str(tmp_path / 'work'), str(tmp_path / 'kept')
    protocol = dict(iters=1750, lr=0.01, labeled_batch=4, log_interval=50, selection=True,
                    test_on_val=True, checkpoint_interval=250)
    elsewhere = [dict(row='supervised', machine='CPU Y, 2 cores')]
    assert speed.needed(elsewhere, work_root, 'CPU X, 2 cores')
    out = speed.measure(protocol, work_root, log=lambda m: None)
    cmd = ' '.join(calls[-1])
    assert 'supervised/deeplabv3plus_effl0_camvid-1-8.py' in cmd
    assert 'train_cfg.max_iters=200' in cmd and 'optim_wrapper.optimizer.lr=0.01' in cmd
    assert 'splits/camvid/1-8/labeled.txt' in cmd and 'randomness.seed=0' in cmd
    assert out['machine'] == 'CPU X, 2 cores' and 'val' not in out   # no val test
    assert out['seconds_per_iter']['all'] == pytest.approx(0.4)   # the first window excluded
    assert speed.supervised_speeds(work_root) == {'CPU X, 2 cores': pytest.approx(0.4)}
    assert not speed.needed(elsewhere, work_root, 'CPU X, 2 cores')
    speed.measure(protocol, work_root, log=lambda m: None)   # read, not trained again
    assert len(calls) == 1
    # kept beside the report, read back on a fresh machine
    speed.keep(work_root, kept)
    assert osp.exists(osp.join(kept, 'speed', 'CPU_X_2_cores', 'result.json'))
    shutil.rmtree(work_root)
    assert speed.needed(elsewhere, work_root, 'CPU X, 2 cores')
    speed.restore(kept, work_root)
    assert speed.supervised_speeds(work_root) == {'CPU X, 2 cores': pytest.approx(0.4)}
    # a supervised run of the benchmark on the machine needs no timing run
    shutil.rmtree(work_root)
    here = [dict(row='supervised', machine='CPU X, 2 cores')]
    assert not speed.needed(here, work_root, 'CPU X, 2 cores')


def test_a_result_made_with_other_annotator_weights_is_trained_again(tmp_path, monkeypatch):
    calls = []

    def fake_training(cmd, log_path, log, progress_seconds):
        calls.append(cmd)
        wd = cmd[cmd.index('--work-dir') + 1]
        os.makedirs(osp.join(wd, 'run', 'vis_data'), exist_ok=True)
        with open(osp.join(wd, 'run', 'vis_data', 'scalars.json'), 'w') as f:
            f.write(json.dumps(dict(mIoU=50.0, step=4)) + '\n')
    monkeypatch.setattr(training, '_run_logged', fake_training)
    work_root = str(tmp_path / 'work')
    opts = {'train_cfg.max_iters': '4'}
    runs = plan.make_plan([0], ['1-8'], ['raw', 'supervised'])
    raw = next(r for r in runs if r.row == 'raw' and r.group == 'strong')
    supervised = next(r for r in runs if r.row == 'supervised')
    for run in (raw, supervised):   # finished before the annotator's weights were kept
        wd = bench.run_work_dir(run, work_root)
        training.dump_json(dict(row=run.row, mIoU=40.0, options=opts), osp.join(wd, 'result.json'))
        training.dump_json(opts, osp.join(wd, 'options.json'))
        open(osp.join(wd, 'last_checkpoint'), 'w').write('iter_4.pth')
    annotators = {'strong': 'a1', 'weak': 'w1'}
    assert bench.finished(raw, work_root, annotators) == 'stale'
    assert bench.finished(supervised, work_root, annotators) == 'done'   # reads no annotator
    assert [r['row'] for r in bench.collect([raw, supervised], work_root, annotators)] == [
        'supervised']
    wd = bench.run_work_dir(raw, work_root)
    out = training.run('cfg.py', opts, wd, {}, log=lambda m: None, result=dict(annotator='a1'))
    # not resumed from the finished checkpoint of the other annotator: trained afresh
    assert calls and '--resume' not in calls[-1] and not out['resumed']
    assert out['annotator'] == 'a1' and out['mIoU'] == 50.0
    assert json.load(open(osp.join(wd + '.old', 'result.json')))['mIoU'] == 40.0
    assert json.load(open(osp.join(wd, 'options.json')))[training.ANNOTATOR_KEY] == 'a1'
    assert bench.finished(raw, work_root, annotators) == 'done'
    # no kept weights for the group yet: none of its results counts
    assert bench.finished(raw, work_root, {'strong': None}) == 'stale'


def test_the_convergence_study_reads_its_kept_runs(tmp_path):
    import convergence
    args = convergence.parse_args(['--work-dir', str(tmp_path / 'work'),
                                   '--out', str(tmp_path / 'out')])
    runs = convergence.plan(args)
    name, _, _, wd = runs[0]
    training.dump_json(dict(mIoU=40.0), osp.join(convergence.kept_dir(args.out, name),
                                                 'result.json'))
    assert convergence.restore_kept(runs, args.out) == 1
    assert json.load(open(osp.join(wd, 'result.json'))) == dict(mIoU=40.0)
    assert convergence.restore_kept(runs, args.out) == 0


def test_the_length_comes_from_the_convergence_study(tmp_path, monkeypatch):
    calls = []

    def study(cmd):   # its kept runs do not have every seed: only training chooses a length
        calls.append(cmd)
        if '--report-only' not in cmd:
            (tmp_path / 'convergence').mkdir()
            (tmp_path / 'convergence' / 'length.json').write_text(json.dumps(dict(length=1250)))
    monkeypatch.setattr(inputs, 'call', study)
    with pytest.raises(SystemExit, match='convergence study has not finished'):
        bench.read_length(str(tmp_path), str(tmp_path / 'out'), run_study=False)
    assert calls[0][0].endswith('convergence.py') and '--report-only' in calls[0]
    assert bench.read_length(str(tmp_path), str(tmp_path / 'out')) == 1250
    assert '--report-only' not in calls[1]
    assert bench.read_length(str(tmp_path), str(tmp_path / 'out')) == 1250 and len(calls) == 2


def test_a_cache_with_fewer_classes_or_from_other_weights_is_remade(tmp_path, monkeypatch):
    import hashlib
    calls = []
    caches = {g: str(tmp_path / g) for g in ('strong', 'weak')}
    weights = {g: str(tmp_path / f'{g}.pth') for g in caches}
    sha1 = {}
    for g in caches:
        (tmp_path / f'{g}.pth').write_bytes(g.encode())
        sha1[g] = hashlib.sha1(g.encode()).hexdigest()
    monkeypatch.setattr(plan, 'ANNOTATORS', caches)
    monkeypatch.setattr(plan, 'ANNOTATOR_WEIGHTS', weights)
    monkeypatch.setattr(inputs, 'call', calls.append)

    def cache(g, topk, made_by):
        os.makedirs(caches[g], exist_ok=True)
        with open(osp.join(caches[g], 'cache_info.json'), 'w') as f:
            json.dump(dict(topk=topk, model=dict(checkpoint_sha1=made_by)), f)
    cache('strong', 11, sha1['strong'])
    cache('weak', 3, sha1['weak'])
    assert inputs.annotator_identities() == sha1
    inputs.make_annotators()
    assert len(calls) == 1 and calls[0][calls[0].index('--out') + 1] == caches['weak']
    assert '--overwrite' in calls[0] and '--topk' not in calls[0]
    assert calls[0][calls[0].index('--weights') + 1] == weights['weak']
    cache('weak', 11, 'other weights')   # every class, but made from other weights
    inputs.make_annotators()
    assert len(calls) == 2 and calls[1][calls[1].index('--out') + 1] == caches['weak']


def test_alpha_choices_are_recomputed_when_a_cache_is_remade(tmp_path, monkeypatch):
    commands = {'strong': 'make strong', 'weak': 'make weak --topk 3'}
    calls = []
    monkeypatch.setattr(inputs, 'cache_fingerprint', lambda g: commands[g])
    monkeypatch.setattr(inputs, 'split_stems', lambda split: (['a'], ['b']))
    monkeypatch.setattr(inputs, 'cache_source', lambda g: g)

    def choose(source, stems, num_classes):
        calls.append(source)
        return dict(alpha=0.1, table=[])
    monkeypatch.setattr(choices, 'choose_alpha', choose)
    out = derived.labeled_choices(str(tmp_path), ['1-8'], 'alpha')
    assert sorted(calls) == ['strong', 'weak']
    assert out['1-8']['weak']['cache'] == 'make weak --topk 3'
    derived.labeled_choices(str(tmp_path), ['1-8'], 'alpha')
    assert len(calls) == 2            # the stored choices are read back
    commands['weak'] = 'make weak'    # the weak cache is remade with every class
    out = derived.labeled_choices(str(tmp_path), ['1-8'], 'alpha')
    assert calls[2:] == ['weak'] and out['1-8']['weak']['cache'] == 'make weak'


def test_the_smallest_risk_target_that_certifies_by_hand():
    # every image: two pixels at 0.99 (right) and two at 0.6 (wrong); a threshold above 0.6
    # keeps only right labels (error 0), and Learn-then-Test certifies target 0.05 from 45
    # images with no error, 0.1 from 22 (docs/conformal.md): with 30 images, 0.1 is the first
    probs = torch.tensor([[0.99, 0.99, 0.6, 0.6], [0.01, 0.01, 0.4, 0.4]]).view(2, 1, 4)
    gt = torch.tensor([[0, 0, 1, 1]])
    stems = [f'img{i}' for i in range(30)]
    out = choices.choose_risk_target(lambda stem: (probs, gt), stems, 2)
    table = {row['target']: row for row in out['table']}
    assert table[0.05]['threshold'] is None and table[0.05]['n_needed'] == 45
    assert table[0.05]['n'] == 30
    assert 0.6 < table[0.1]['threshold'] <= 0.99 and table[0.1]['n_needed'] == 22
    assert out['risk_target'] == 0.1 and out['risk'] == 'false_label_rate'
    # with 45 images, 0.05 certifies
    many = [f'img{i}' for i in range(45)]
    assert choices.choose_risk_target(lambda stem: (probs, gt), many, 2)['risk_target'] == 0.05


def test_cached_json_computes_once_and_again_when_stale(tmp_path):
    path, calls = str(tmp_path / 'q.json'), []

    def compute():
        calls.append(1)
        return dict(cache=f'v{len(calls)}')
    assert derived.cached_json(path, compute) == dict(cache='v1')
    assert derived.cached_json(path, compute) == dict(cache='v1') and len(calls) == 1
    stale = lambda stored: stored['cache'] != 'v2'  # noqa: E731
    assert derived.cached_json(path, compute, stale=stale) == dict(cache='v2')
    assert json.loads((tmp_path / 'q.json').read_text()) == dict(cache='v2')
    assert derived.cached_json(path, compute, stale=stale) == dict(cache='v2') and len(calls) == 2


def test_quality_results_of_an_older_version_or_another_cache_are_measured_again():
    now = dict(version=derived.QUALITY_VERSION, cache='make strong', risk_targets=[0.05, 0.1])
    assert not derived._stale(now, 'make strong', (0.05, 0.1))
    assert derived._stale(dict(now, version=1), 'make strong', (0.05, 0.1))
    assert derived._stale({k: v for k, v in now.items() if k != 'version'}, 'make strong',
                          (0.05, 0.1))
    assert derived._stale(now, 'make strong --flip', (0.05, 0.1))
    assert derived._stale(now, 'make strong', (0.05, ))
