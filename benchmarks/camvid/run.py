"""The CamVid semi-supervised benchmark: one command, every row, the report.

  .venv/bin/python benchmarks/camvid/run.py [--plan] [--seeds 0 1 2] [--splits 1-8 1-16]
      [--iters N] [--rows ...] [--max-runs N] [--work-dir work_dirs/camvid_benchmark]
      [--out docs/results]

What it does, each step skipped when its output exists (so the benchmark runs in several
sittings; an unfinished training run resumes from its last checkpoint, and a finished run whose
work dir is gone is read from its kept logs under docs/results/logs/camvid/):

1. data: CamVid at data/camvid (linked to ../shared/data/camvid when that exists, else made by
   tools/prepare_camvid.py); the seeded labeled splits 1/16, 1/8, 1/4 of train
   (tools/make_splits.py, split seed 0; the unlabeled images are the rest of train); the
   selection set (the 62 0001TP frames of CamVid test, which every choice reads; val, 0016E5,
   gives the final numbers and no choice);
2. the two annotators (tools/train_camvid_annotator.py, trained on the Seq05VD frames of test
   only, their probabilities of every class on CamVid train cached): 'strong' at full
   resolution with flips (the paper's regime: strong but domain-shifted) and 'weak' (half
   resolution, 500 iterations);
3. the length: benchmarks/camvid/convergence.py's choice (WORK_DIR/convergence/length.json;
   the study runs first when it has not finished), unless ``--iters``;
4. the choices: per annotator, the smallest alpha whose pixel-mode filter removes >= 1% of the
   labeled images' pixels and the smallest risk target (false-label rate) that the labeled
   images certify (labeled images only), and the fixed threshold t* with the best
   selection-set mIoU among the candidates (choices.py);
5. pseudo-label quality of both annotators on the 1/8 split's unlabeled images (quality.py);
6. the runs of plan.py in its order, each evaluated on the selection set and on val; on a
   machine where no supervised run was made, a 200-iteration timing run of the supervised row
   first (speed.py: the cost table's ratios compare one machine's speeds);
7. the report: docs/results/camvid.md and its PNGs (report.py), and the README's table of
   split 1/8 (report_readme.py; only when the report goes to docs/results).

Steps 1 and 2 are inputs.py, 4 (alpha*, target*) and 5 are derived.py, 6 is training.py in
plan.py's order; this file runs them and makes the choice of t*.

``--plan`` prints every run, whether it is done, and its estimated cost, and trains nothing.
``--max-runs N`` stops after N runs trained in this sitting; ``--report-only`` writes the
report from the runs finished so far. Each run gets the cores that other work leaves free when
it starts (``CAMVID_BENCHMARK_THREADS`` overrides) and prints its progress with mmengine's
remaining-time estimate every two minutes. ``--risk-only`` measures the
risk-controlled filter's label quality alone (no training) into docs/results/camvid_risk.md.

Protocol (the same for every row): DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0 (BN
momentum 0.1), 160 px crops of the half-resolution images, 4 labeled images per iteration (and 4
unlabeled, 8 for UniMatch's CutMix source), SGD lr 0.01 (head x10) with poly decay, the chosen
length, seeds per ``--seeds``; ConformalSAM with self-reliance from 75% of the iterations.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

import inputs  # noqa: E402
import plan  # noqa: E402
import speed  # noqa: E402
import training  # noqa: E402
from derived import (ALPHAS, QUALITY_SPLIT, SIMULATED_GAPS, TAUS,  # noqa: E402
                     labeled_choices, run_quality, run_risk_quality)
from inputs import (SPLITS, cache_size, check_camvid, log, make_annotators,  # noqa: E402
                    make_selection, make_splits, split_stems)
from report_training import final_val  # noqa: E402
from training import REPO, ROW_NAMES, dump_json  # noqa: E402

CHECKPOINT_INTERVAL = 250


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--splits', nargs='+', default=['1-8'], choices=SPLITS,
                   help='labeled splits (default: 1/8; 1/16 next: --splits 1-8 1-16)')
    p.add_argument('--rows', nargs='+', default=list(ROW_NAMES), choices=ROW_NAMES)
    p.add_argument('--iters', type=int, default=None,
                   help='training iterations of every row (default: the convergence '
                        "study's length, WORK_DIR/convergence/length.json)")
    p.add_argument('--plan', action='store_true',
                   help='print every run and its estimated cost; train nothing')
    p.add_argument('--max-runs', type=int, default=None,
                   help='stop after this many runs trained in this sitting')
    p.add_argument('--report-only', action='store_true',
                   help='write the report from the runs finished so far; train nothing')
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'camvid_benchmark'))
    p.add_argument('--out', default=osp.join(REPO, 'docs', 'results'),
                   help='where camvid.md and its PNGs go')
    p.add_argument('--skip-quality', action='store_true')
    p.add_argument('--skip-training', action='store_true')
    p.add_argument('--risk-only', action='store_true',
                   help='only the risk-controlled filter quality (no training): '
                        'docs/results/camvid_risk.md')
    return p.parse_args(argv)



def read_length(work_root, out_dir, run_study=True):
    """The convergence study's length. When it has not chosen one yet, the study runs first
    (resumable; its finished runs are read from their kept logs), or with ``run_study`` False
    only reads its finished runs (``--report-only``, which trains nothing)."""
    path = osp.join(work_root, 'convergence', 'length.json')
    if not osp.exists(path):
        log('the convergence study chooses the length first (benchmarks/camvid/convergence.py)')
        inputs.call([osp.join(HERE, 'convergence.py'), '--work-dir',
                     osp.join(work_root, 'convergence'), '--out', out_dir]
                    + ([] if run_study else ['--report-only']))
    if not osp.exists(path):
        raise SystemExit(f'error: no {path}: the convergence study has not finished '
                         '(benchmarks/camvid/convergence.py); pass --iters')
    with open(path) as f:
        return int(json.load(f)['length'])



def choose_tau(results, split, group='strong'):
    """t* from the finished candidate runs on the selection set, or None while some run."""
    import choices
    found = {}
    for r in results:
        if r['split'] == split and r.get('group') == group and r['seed'] == SEED_OF_CHOICES:
            if r['row'] == 'threshold_0.9':
                found[0.9] = r['mIoU']
            elif r['row'].startswith('threshold_candidate_'):
                found[float(r['row'][len('threshold_candidate_'):])] = r['mIoU']
    if set(found) != set(training.TAU_CANDIDATES):
        return None
    return choices.choose_tau(found)


SEED_OF_CHOICES = 0


def execute(run, protocol, work_root, results, alphas, risk_targets=None):
    """Train one run of the plan (or read it) and return its result."""
    risk_targets = risk_targets or {}
    group_choices = {g: dict(alpha=alphas[run.split].get(g, {}).get('alpha'),
                             risk_target=risk_targets.get(run.split, {}).get(g, {}).get(
                                 'risk_target'),
                             tau=choose_tau(results, run.split, g)) for g in plan.ANNOTATORS}
    row = plan.ROW[run.row]
    extra = None
    if run.tau is not None:
        extra = {'model.pseudo_label_head.confidence_threshold': run.tau}
        group_choices[run.group]['tau'] = run.tau
    elif row.choice == 'tau' and group_choices[run.group]['tau'] is None:
        raise RuntimeError(f'{run.describe()}: the threshold candidates have not all finished')
    elif row.choice == 'alpha' and group_choices[run.group]['alpha'] is None:
        raise RuntimeError(f'{run.describe()}: no alpha of the grid filters for the '
                           f'{run.group} annotator (choices_alpha.json)')
    elif row.choice == 'risk_target' and group_choices[run.group]['risk_target'] is None:
        raise RuntimeError(f'{run.describe()}: no target of the grid is certified for the '
                           f'{run.group} annotator (choices_risk_target.json)')
    return training.run_row(row, run.split, run.seed, protocol, work_root, log=log,
                            group=run.group, choices=group_choices,
                            name=run.name if run.tau is not None else None, extra=extra)


def finished(run, work_root, annotators):
    """'done' (a result made with the annotator of ``annotators``, {group: weights sha1}),
    'stale' (a result made with other weights: it trains again), 'resumes' or 'to run'."""
    wd, row = run_work_dir(run, work_root), plan.ROW[run.row]
    if osp.exists(osp.join(wd, 'result.json')):
        with open(osp.join(wd, 'result.json')) as f:
            current = training.made_with(json.load(f), row, run.group, annotators)
        return 'done' if current else 'stale'
    if osp.exists(osp.join(wd, 'last_checkpoint')) and osp.exists(osp.join(wd, 'options.json')):
        wanted = annotators.get(run.group) if row.conformalsam else None
        with open(osp.join(wd, 'options.json')) as f:
            if json.load(f).get(training.ANNOTATOR_KEY) == wanted:
                return 'resumes'
    return 'to run'


def print_plan(runs, iters, work_root, measured, annotators):
    total = 0.0
    width = max(len(run.describe()) for run in runs)
    states = [finished(run, work_root, annotators) for run in runs]
    for n, (run, state) in enumerate(zip(runs, states), 1):
        cost = 0.0 if state == 'done' else plan.estimate(run, iters, measured)
        total += cost
        print(f'{n:3d}. {run.describe():{width}s} {state:8s} ~{cost / 60:5.1f} min')
    done = states.count('done')
    factor = plan.speed_factor(measured)
    speeds = ', '.join(f'{k} {measured[k]:.2f}' if measured.get(k) else f'{k} ~{v * factor:.2f}'
                       for k, v in plan.SECONDS_PER_ITER.items())
    print(f'{done} of {len(runs)} runs done; ~{total / 3600:.1f} h left at {iters} iterations '
          f'per run (s/it: {speeds}; ~: not measured on this machine yet, the default times '
          f'{factor:.2f}, the measured classes\' speed ratio)')


def measured_speeds(results, machine=None):
    """Seconds per iteration of the finished runs, per cost class (the median over the runs);
    only the runs made on ``machine`` (default: this one) where there are some."""
    machine = machine or training.machine()
    here = [r for r in results if r.get('machine') == machine]
    speeds = {}
    for r in here or results:
        s = (r.get('seconds_per_iter') or {}).get('all')
        if s:
            run = plan.Run(r['row'] if r['row'] in plan.ROW else 'threshold_best', r['split'],
                           r['seed'], r.get('group'))
            speeds.setdefault(plan.cost_class(run), []).append(s)
    return {k: statistics.median(v) for k, v in speeds.items()}


def run_work_dir(run, work_root):
    wd = training.run_dir(work_root, plan.ROW[run.row], run.split, run.seed, run.group)
    return osp.join(osp.dirname(wd), run.name) if run.tau is not None else wd


def kept_dir(run, work_root, out_dir):
    return osp.join(out_dir, 'logs', 'camvid', osp.relpath(run_work_dir(run, work_root),
                                                           work_root))


def keep_logs(runs, work_root, out_dir):
    """The finished runs' results, configs, trimmed logs and pictured predictions under
    OUT/logs/camvid/ (beside the report, so that every number of it can be traced to a kept
    log)."""
    for run in runs:
        wd = run_work_dir(run, work_root)
        if osp.exists(osp.join(wd, 'result.json')):
            training.keep_logs(wd, kept_dir(run, work_root, out_dir))


def restore_kept(runs, work_root, out_dir):
    """The finished runs kept under OUT/logs/camvid/ whose work dirs are gone are read from
    there (training.restore), not trained again."""
    n = sum(training.restore(kept_dir(run, work_root, out_dir), run_work_dir(run, work_root))
            for run in runs)
    if n:
        log(f'{n} finished runs read from their kept logs ({osp.join(out_dir, "logs", "camvid")})')


def collect(runs, work_root, annotators):
    """The results of the finished runs (none made with other annotator weights)."""
    out = []
    for run in runs:
        if finished(run, work_root, annotators) == 'done':
            with open(osp.join(run_work_dir(run, work_root), 'result.json')) as f:
                out.append(json.load(f))
    return out


def run_training(args, protocol, runs, alphas, risk_targets):
    annotators = protocol['annotator_sha1']
    results = collect(runs, args.work_dir, annotators)
    trained = 0
    for n, run in enumerate(runs, 1):
        if finished(run, args.work_dir, annotators) == 'done':
            continue
        if args.max_runs is not None and trained >= args.max_runs:
            log(f'stopping after {trained} runs (--max-runs); the next sitting goes on')
            break
        if trained == 0 and speed.needed(results, args.work_dir, training.machine()):
            speed.measure(protocol, args.work_dir, log=log)
        speeds = measured_speeds(results)   # once per run, not once per remaining run
        left = sum(plan.estimate(r, protocol['iters'], speeds)
                   for r in runs[n - 1:] if finished(r, args.work_dir, annotators) != 'done')
        log(f'[{n}/{len(runs)}] {run.describe()}: ~{left / 3600:.1f} h left in the plan')
        r = execute(run, protocol, args.work_dir, results, alphas, risk_targets)
        trained += 1
        log(f'    selection mIoU {r["mIoU"]:.2f}, val mIoU {final_val(r):.2f}, '
            f'{r["wall_seconds"] / 60:.0f} min')
        results.append(r)
    return collect(runs, args.work_dir, annotators)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    check_camvid()
    make_splits()
    make_selection()
    if args.risk_only:
        make_annotators()
        import report_risk
        path = report_risk.write_risk(run_risk_quality(args.work_dir), args.out, QUALITY_SPLIT)
        log(f'done in {(time.perf_counter() - start) / 60:.1f} min: {path}')
        return
    runs = plan.make_plan(args.seeds, args.splits, args.rows)
    restore_kept(runs, args.work_dir, args.out)
    speed.restore(osp.join(args.out, 'logs', 'camvid'), args.work_dir)
    iters = args.iters or read_length(args.work_dir, args.out,
                                      run_study=not (args.plan or args.report_only))
    if args.plan:
        annotators = inputs.annotator_identities()
        print_plan(runs, iters, args.work_dir,
                   measured_speeds(collect(runs, args.work_dir, annotators)), annotators)
        return
    annotator_seconds = {} if args.report_only else make_annotators()
    # a checkpoint every 250 iterations (the last one kept): a run stopped with its sitting
    # resumes from it in the next one instead of starting again; a result of the annotator
    # rows counts only when made from the kept weights (annotator_sha1)
    protocol = dict(iters=iters, lr=args.lr, labeled_batch=4, log_interval=50, selection=True,
                    test_on_val=True, annotators=dict(plan.ANNOTATORS),
                    annotator_weights=dict(plan.ANNOTATOR_WEIGHTS),
                    annotator_sha1=inputs.annotator_identities(),
                    checkpoint_interval=CHECKPOINT_INTERVAL, keep_checkpoints=1)
    alphas = labeled_choices(args.work_dir, args.splits, 'alpha')
    risk_targets = labeled_choices(args.work_dir, args.splits, 'risk_target')
    quality_results = {} if args.skip_quality else run_quality(args.work_dir)
    train_results = (collect(runs, args.work_dir, protocol['annotator_sha1'])
                     if args.skip_training or args.report_only
                     else run_training(args, protocol, runs, alphas, risk_targets))
    summary = dict(protocol=protocol, seeds=args.seeds, splits=args.splits, rows=args.rows,
                   planned=len(runs), quality_split=QUALITY_SPLIT, alphas=ALPHAS, taus=TAUS,
                   simulated_gaps=SIMULATED_GAPS,
                   caches={g: cache_size(osp.join(REPO, c)) for g, c in plan.ANNOTATORS.items()
                           if osp.isdir(osp.join(REPO, c))},
                   annotator_seconds=annotator_seconds, alpha_choices=alphas,
                   risk_target_choices=risk_targets,
                   tau_choices={sp: choose_tau(train_results, sp) for sp in args.splits},
                   supervised_timing=speed.supervised_speeds(args.work_dir),
                   wall_seconds=None if args.report_only else time.perf_counter() - start,
                   threads=os.cpu_count())
    dump_json(dict(summary=summary, quality=quality_results, training=train_results),
          osp.join(args.work_dir, 'results.json'))
    import report
    path = report.write(args.work_dir, args.out, split_stems(QUALITY_SPLIT))
    keep_logs(runs, args.work_dir, args.out)   # after the report: with its predictions
    speed.keep(args.work_dir, osp.join(args.out, 'logs', 'camvid'))
    if osp.abspath(args.out) == osp.join(REPO, 'docs', 'results') and QUALITY_SPLIT in args.splits:
        import report_readme
        report_readme.update(osp.join(REPO, 'README.md'), summary, train_results, QUALITY_SPLIT)
    log(f'done in {(time.perf_counter() - start) / 60:.1f} min: {path}')


if __name__ == '__main__':
    main()
