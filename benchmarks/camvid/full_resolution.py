"""The CamVid benchmark at full resolution (480 x 360 images, 320 px crops), for a GPU.

  python benchmarks/camvid/full_resolution.py --iters 1750 [--seeds 0 1 2]
      [--rows supervised raw conformalsam conformal_pixel] [--workers 8] [--filter-device None]
      [--work-dir work_dirs/camvid_benchmark_full] [--out docs/results] [--report-only]

The runs of run.py (training.py's rows on split 1/8, the strong annotator, validation on the
selection set, val tested on the final checkpoint, a checkpoint every 250 iterations so that a
stopped run resumes), each config rewritten to full resolution by resolution.py; the rows run in
the order given. The length is the half-resolution benchmark's (``--iters``; its convergence
study ran at half resolution). Rows with a chosen option (t*, alpha*, target*) are not offered:
their choices are made at half resolution. A run that fails is reported and the next one runs.

Reads the strong annotator's cache (made when missing, inputs.py; on the GPU when there is one).
Writes WORK_DIR/results.json, the kept logs (of unfinished runs too) under
OUT/logs/camvid_full_resolution/, and OUT/camvid_full_resolution.md (report_full_resolution.py),
which sets each run beside the half-resolution run of the same row and seed (OUT/logs/camvid/)
and names the machine of each run from its log.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import traceback

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

import inputs  # noqa: E402
import plan  # noqa: E402
import report_full_resolution  # noqa: E402
import training  # noqa: E402
from report_training import final_val  # noqa: E402
from resolution import write_full_resolution  # noqa: E402

SPLIT = '1-8'
GROUP = 'strong'
CHECKPOINT_INTERVAL = 250
ROWS = tuple(r.name for r in training.ROWS if r.choice is None)
DEFAULT_ROWS = ('supervised', 'raw', 'conformalsam', 'conformal_pixel')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--iters', type=int, required=True,
                   help="training iterations of every run (the half-resolution benchmark's "
                        'length: work_dirs/camvid_benchmark/convergence/length.json)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--rows', nargs='+', default=list(DEFAULT_ROWS), choices=ROWS)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--workers', type=int, default=8,
                   help='training data-loader workers (default: %(default)s)')
    p.add_argument('--filter-device', choices=('None', 'cpu'), default='None',
                   help="model.pseudo_label_head.filter_device of the annotator rows: 'None' "
                        "(the head's default: where the batch is, the GPU) or 'cpu' (the same "
                        'labels, benchmarks/bench_filter_device.py)')
    p.add_argument('--work-dir', default=osp.join(training.REPO, 'work_dirs',
                                                  'camvid_benchmark_full'))
    p.add_argument('--out', default=osp.join(training.REPO, 'docs', 'results'))
    p.add_argument('--report-only', action='store_true',
                   help='write the report from the runs finished so far; train nothing')
    return p.parse_args(argv)


def runs_of(rows, seeds):
    return [plan.Run(r, SPLIT, s, GROUP if plan.ROW[r].conformalsam else None)
            for s in seeds for r in rows]


def work_dir_of(run, work_root):
    return training.run_dir(work_root, plan.ROW[run.row], run.split, run.seed, run.group)


def kept_dir_of(run, work_root, out_dir):
    """Where the run's logs are kept beside the report."""
    return osp.join(out_dir, report_full_resolution.LOGS,
                    osp.relpath(work_dir_of(run, work_root), work_root))


def write_configs(rows, config_dir):
    """Every row's config at full resolution under ``config_dir`` (same relative paths)."""
    for config in sorted({plan.ROW[r].config for r in rows}):
        write_full_resolution(osp.join(training.CONFIGS, config), osp.join(config_dir, config))


def keep_annotator_manifest(out_dir):
    """The manifest of the cache these runs read (the checkpoint's sha1, the annotator's
    quality on CamVid train), kept beside their logs."""
    manifest = osp.join(training.REPO, plan.ANNOTATORS[GROUP], 'cache_info.json')
    if osp.exists(manifest):
        dest = osp.join(out_dir, report_full_resolution.LOGS, report_full_resolution.MANIFEST)
        os.makedirs(osp.dirname(dest), exist_ok=True)
        shutil.copyfile(manifest, dest)


def current_result(run, work_root, annotators):
    """The run's result, or None when it has none or one made from other annotator weights
    than the kept ones (``annotators``: {group: sha1})."""
    path = osp.join(work_dir_of(run, work_root), 'result.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if training.made_with(result, plan.ROW[run.row], run.group, annotators) else None


def train(protocol, runs, work_root):
    """Train the runs in order; a run that fails is logged and the next one runs. Returns the
    runs that failed."""
    failed = []
    for n, run in enumerate(runs, 1):
        if current_result(run, work_root, protocol['annotator_sha1']):
            continue
        inputs.log(f'[{n}/{len(runs)}] {run.describe()} at full resolution')
        try:
            r = training.run_row(plan.ROW[run.row], run.split, run.seed, protocol, work_root,
                                 log=inputs.log, group=run.group)
        except Exception:   # its log stays in its work dir; the report lists it as unfinished
            inputs.log(f'    failed:\n{traceback.format_exc()}')
            failed.append(run)
            continue
        inputs.log(f'    selection mIoU {r["mIoU"]:.2f}, val mIoU '
                   f'{final_val(r):.2f}, {r["wall_seconds"] / 60:.1f} min')
    return failed


def main(argv=None):
    args = parse_args(argv)
    runs = runs_of(args.rows, args.seeds)
    config_dir = osp.join(args.work_dir, 'configs')
    protocol = dict(iters=args.iters, lr=args.lr, labeled_batch=4, log_interval=50,
                    selection=True, test_on_val=True, annotators=dict(plan.ANNOTATORS),
                    checkpoint_interval=CHECKPOINT_INTERVAL, keep_checkpoints=1,
                    config_dir=config_dir, workers=args.workers,
                    annotator_sha1=inputs.annotator_identities())
    protocol['filter_device'] = None if args.filter_device == 'None' else args.filter_device
    for run in runs:   # finished runs whose work dirs are gone are read from their kept logs
        training.restore(kept_dir_of(run, args.work_dir, args.out), work_dir_of(run, args.work_dir))
    failed = []
    if not args.report_only:
        inputs.check_camvid()
        inputs.make_splits()
        inputs.make_selection()
        if any(r.group for r in runs):
            inputs.make_annotators([GROUP])
        write_configs(args.rows, config_dir)
        failed = train(protocol, runs, args.work_dir)
        keep_annotator_manifest(args.out)
    summary = dict(protocol=dict(protocol, config_dir=osp.relpath(config_dir, training.REPO)),
                   resolution='480 x 360 images, 320 px crops', split=SPLIT, group=GROUP,
                   seeds=args.seeds, rows=args.rows)
    finished, unfinished, stale = [], [], []
    for run in runs:
        wd = work_dir_of(run, args.work_dir)
        kept = kept_dir_of(run, args.work_dir, args.out)
        result = current_result(run, args.work_dir, protocol['annotator_sha1'])
        if result:
            finished.append(result)
        elif osp.exists(osp.join(wd, 'result.json')):
            with open(osp.join(wd, 'result.json')) as f:
                stale.append(json.load(f))
        elif any(osp.exists(osp.join(d, 'train.log')) for d in (wd, kept)):
            unfinished.append(dict(run=run.describe(), row=run.row, seed=run.seed,
                                   log=osp.relpath(osp.join(kept, 'train.log'), args.out)))
        if osp.isdir(wd):
            training.keep_logs(wd, kept)
    training.dump_json(dict(summary=summary, training=finished, unfinished=unfinished,
                            stale=stale), osp.join(args.work_dir, 'results.json'))
    path = report_full_resolution.write(summary, finished, unfinished, args.out, stale)
    inputs.log(f'{len(finished)} of {len(runs)} runs finished'
               + (f', {len(failed)} failed' if failed else '') + f': {path}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
