"""How long the CamVid benchmark trains: convergence of the supervised baseline on split 1/8.

  .venv/bin/python benchmarks/camvid/convergence.py [--seeds 0 1 2] [--iters 2000] [--every 250]
      [--package-bn-seeds 0] [--plan] [--work-dir work_dirs/camvid_benchmark/convergence]
      [--out docs/results]

Each run trains the benchmark's supervised row (benchmarks/camvid/training.py: DeepLabV3+ on
EfficientNet-Lite0, 160 px crops, batch 4, SGD lr 0.01 with poly decay over ``--iters``) on the
labeled 1/8 split, validates every ``--every`` iterations on the selection set (the 62 0001TP
frames of CamVid test) and keeps every checkpoint, which ``tools/test.py`` then evaluates on
val (0016E5, 101 images). Runs: ``--seeds`` with the backbone's default BN momentum (0.1) and
``--package-bn-seeds`` with the package's 0.01 (``bn_momentum=None``), the two measured on the
same schedule.

Note that poly decay depends on the total length, so iteration 1000 of a 2000-iteration run is
not a 1000-iteration run; the curve says where more iterations stop paying, and the chosen
length is then trained with its own full decay.

The length, chosen on the selection set only: the smallest evaluated iteration L whose mean
selection mIoU (over the default-BN seeds) is within one seed standard deviation at L of the
best mean at any later iteration. Written to WORK_DIR/length.json and, with the curves of both
sets, docs/results/camvid_convergence.md (+ .png). Resumable: finished runs are read, an
interrupted run resumes from its last checkpoint, and a finished run whose work dir is gone
is read from its kept logs (docs/results/logs/camvid_convergence/).
"""
import argparse
import os.path as osp
import statistics
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

import inputs  # noqa: E402
import training  # noqa: E402
from training import REPO, ROWS  # noqa: E402

SPLIT = '1-8'
SUPERVISED = next(r for r in ROWS if r.name == 'supervised')
SECONDS_PER_ITER = 0.32   # supervised, 160 px, batch 4, this machine's 2 cores (README)
EVAL_SECONDS = 40         # one selection-set validation + one val test


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--package-bn-seeds', type=int, nargs='*', default=[0])
    p.add_argument('--iters', type=int, default=2000)
    p.add_argument('--every', type=int, default=250)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'camvid_benchmark',
                                                  'convergence'))
    p.add_argument('--out', default=osp.join(REPO, 'docs', 'results'))
    p.add_argument('--plan', action='store_true', help='print the runs and their cost, run none')
    p.add_argument('--report-only', action='store_true',
                   help='write the report from the runs finished so far (the length only when '
                        'every default-BN seed has finished); train nothing')
    return p.parse_args(argv)


def plan(args):
    """(name, seed, bn_momentum option, work dir) of every run, default BN first."""
    runs = [(f'bn0.1_seed{s}', s, 0.1) for s in args.seeds]
    runs += [(f'bn0.01_seed{s}', s, None) for s in args.package_bn_seeds]
    return [(n, s, bn, osp.join(args.work_dir, n)) for n, s, bn in runs]


KEPT_LOGS = osp.join('logs', 'camvid_convergence')   # under --out


def kept_dir(out_dir, name):
    return osp.join(out_dir, KEPT_LOGS, name)


def restore_kept(runs, out_dir):
    """The finished runs kept beside the report whose work dirs are gone are read from there
    (training.restore); returns how many."""
    return sum(training.restore(kept_dir(out_dir, name), wd) for name, _, _, wd in runs)


def protocol(args):
    return dict(iters=args.iters, lr=args.lr, labeled_batch=4, log_interval=50,
                val_interval=args.every, checkpoint_interval=args.every,
                keep_checkpoints=args.iters // args.every + 1, selection=True,
                test_on_val=True)


def estimate(args):
    evals = args.iters // args.every
    return args.iters * SECONDS_PER_ITER + evals * EVAL_SECONDS


def choose_length(curves):
    """curves: {seed: {iteration: selection mIoU}} -> (L, table rows)."""
    its = sorted(set.intersection(*(set(c) for c in curves.values())))
    rows = []
    for it in its:
        vals = [c[it] for c in curves.values()]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append((it, statistics.mean(vals), sd))
    for i, (it, mean, sd) in enumerate(rows):
        if max(m for _, m, _ in rows[i:]) - mean <= sd:
            return it, rows
    return its[-1], rows


def main(argv=None):
    args = parse_args(argv)
    runs = plan(args)
    per_run = estimate(args)
    restored = restore_kept(runs, args.out)
    if restored:
        inputs.log(f'{restored} finished runs read from their kept logs '
                   f'({osp.join(args.out, KEPT_LOGS)})')
    if args.plan:
        for name, seed, bn, wd in runs:
            state = ('done' if osp.exists(osp.join(wd, 'result.json')) else
                     'resumes' if osp.exists(osp.join(wd, 'last_checkpoint')) else 'to run')
            print(f'{name:16s} seed {seed}  bn_momentum {bn}  ~{per_run / 60:.0f} min  {state}')
        print(f'total ~{len(runs) * per_run / 60:.0f} min (at {SECONDS_PER_ITER} s/it)')
        return
    inputs.check_camvid()
    inputs.make_splits()
    inputs.make_selection()
    proto = protocol(args)
    results = {}
    start = time.perf_counter()
    if args.report_only:
        import json
        runs = [r for r in runs if osp.exists(osp.join(r[3], 'result.json'))]
        for name, _, _, wd in runs:
            with open(osp.join(wd, 'result.json')) as f:
                results[name] = json.load(f)
    for n, (name, seed, bn, wd) in enumerate([] if args.report_only else runs, 1):
        left = (len(runs) - n + 1) * per_run
        inputs.log(f'[{n}/{len(runs)}] supervised {SPLIT} {name}: ~{per_run / 60:.0f} min; '
                  f'~{left / 60:.0f} min left in the study')
        opts = training.row_options(SUPERVISED, SPLIT, seed, proto)
        opts['model.backbone.bn_momentum'] = bn
        results[name] = training.run(
            osp.join(training.CONFIGS, SUPERVISED.config), opts, wd, proto, log=inputs.log,
            result=dict(row='supervised', split=SPLIT, seed=seed, bn_momentum=bn))
        r = results[name]
        inputs.log(f'    selection {r["val_curve"]}, val {r["val"]}')
    for name, _, _, wd in runs:
        training.keep_logs(wd, kept_dir(args.out, name))
    default = {results[n]['seed']: {int(k): v for k, v in results[n]['val_curve'].items()}
               for n, _, bn, _ in runs if bn == 0.1}
    length, table = choose_length(default)
    if len(default) == len(args.seeds):
        training.dump_json(dict(length=length, rule='smallest L with max later mean - mean(L) <= '
                         'sd(L), selection set, default BN seeds', table=table,
                         iters=args.iters), osp.join(args.work_dir, 'length.json'))
    else:   # a partial report: no length until every seed has finished
        length = None
    import report_convergence
    path = report_convergence.write(results, runs, length, table, args, args.out)
    inputs.log(f'length {length}; done in {(time.perf_counter() - start) / 60:.1f} min: {path}')


if __name__ == '__main__':
    main()
