"""The supervised row's speed on this machine: the denominator of the cost table's ratios.

The cost table compares the speeds of one machine's runs (``training.machine()``), as ratios
to the supervised row. Where the benchmark's supervised runs were made on another machine, a
timing run of the supervised row gives that denominator: the row's config and options (split
1/8, seed 0), ``TIMING_ITERS`` iterations, its seconds per iteration read like every run's (the
mean over the logged windows, the first one excluded). It trains once per machine, in
``WORK_ROOT/speed/MACHINE/``, and is kept under ``OUT/logs/camvid/speed/MACHINE/`` like the
runs, so that the ratio can be traced to a kept log.
"""
import json
import os
import os.path as osp
import re

import plan
import training

TIMING_ITERS = 200
SPLIT, SEED = '1-8', 0


def slug(machine):
    """A folder name for a machine: 'AMD EPYC, 2 cores' -> 'AMD_EPYC_2_cores'."""
    return re.sub(r'[^A-Za-z0-9]+', '_', machine).strip('_')


def timing_dir(root, machine):
    return osp.join(root, 'speed', slug(machine))


def needed(results, work_root, machine):
    """Whether ``machine`` has neither a finished supervised run among ``results`` nor a
    timing run under ``WORK_ROOT/speed/``."""
    return not (machine in supervised_speeds(work_root)
                or any(r.get('row') == 'supervised' and r.get('machine') == machine
                       for r in results))


def measure(protocol, work_root, log=print):
    """Train the supervised row for ``TIMING_ITERS`` iterations on this machine (read, not
    trained, when done before) and return its result (``seconds_per_iter``, ``machine``)."""
    row = plan.ROW['supervised']
    timing = dict(protocol, iters=TIMING_ITERS, test_on_val=False, checkpoint_interval=None)
    opts = training.row_options(row, SPLIT, SEED, timing)
    work_dir = timing_dir(work_root, training.machine())
    log(f'timing the supervised row on this machine ({TIMING_ITERS} iterations, the cost '
        f'table\'s ratios): {work_dir}')
    return training.run(osp.join(protocol.get('config_dir') or training.CONFIGS, row.config),
                        opts, work_dir, timing, log=log,
                        result=dict(row='supervised_timing', split=SPLIT, seed=SEED))


def supervised_speeds(root):
    """{machine: seconds per iteration} of the timing runs under ``ROOT/speed/``."""
    out = {}
    for name in _timing_runs(root):
        path = osp.join(root, 'speed', name, 'result.json')
        if osp.exists(path):
            with open(path) as f:
                r = json.load(f)
            spi = (r.get('seconds_per_iter') or {}).get('all')
            if r.get('machine') and spi:
                out[r['machine']] = spi
    return out


def keep(work_root, kept_root):
    """Copy every timing run's result and trimmed logs under ``KEPT_ROOT/speed/``."""
    for name in _timing_runs(work_root):
        wd = osp.join(work_root, 'speed', name)
        if osp.exists(osp.join(wd, 'result.json')):
            training.keep_logs(wd, osp.join(kept_root, 'speed', name))


def restore(kept_root, work_root):
    """The other way round (a fresh machine): the kept timing runs' results are read back."""
    for name in _timing_runs(kept_root):
        training.restore(osp.join(kept_root, 'speed', name), osp.join(work_root, 'speed', name))


def _timing_runs(root):
    """The machine folders under ``ROOT/speed/``, sorted."""
    base = osp.join(root, 'speed')
    return sorted(os.listdir(base)) if osp.isdir(base) else []
