"""The benchmark's training rows: one ``tools/train.py`` run per (row, split, seed).

Every row trains the same network (DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0) with
the same crop (160 px of the half-resolution images), labeled batch (4), iterations, learning
rate and seed; the rows differ only in what the unlabeled images contribute. Each run writes
``result.json`` into its work dir when it finishes, and a run whose result exists is not
trained again, so an interrupted benchmark resumes where it stopped.
"""
import json
import os
import os.path as osp
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
FILTER_DEVICE_OPTION = 'model.pseudo_label_head.filter_device'
ANNOTATOR_KEY = 'annotator_sha1'   # in a run's options.json: the weights its cache came from
SELECTION_FILE = 'splits/camvid/selection.txt'  # relative to the configs' data_root


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    short: str                   # for plots
    config: str
    options: dict = field(default_factory=dict)
    host: str = 'none'           # the host method, for the cost table
    conformalsam: bool = False   # a ConformalSAM model: the row reads an annotator
    choice: str = None           # 'tau' / 'alpha' / 'risk_target': an option chosen on the
    #                              selection set / the labeled images before the row runs
    #                              (choices.py)
    recipe: str = 'benchmark'    # the optimizer: the benchmark's (SGD at --lr, head x10) or
    #                              'hosts': the hosts' street-scene one of the row's config

    @property
    def supervised(self):
        """Trains on the labeled images only (a plain data set, not a semi one)."""
        return self.config.startswith('supervised/')


def _stage_one(**head):
    """Stage I only, with these ``model.pseudo_label_head`` options."""
    opts = {f'model.pseudo_label_head.{k}': v for k, v in head.items()}
    opts['model.self_reliance_at'] = None
    return opts


def _risk(target):
    return {'filter': 'risk', 'risk_cfg.target_error': target, 'risk_cfg.risk': 'false_label_rate'}


SUPERVISED = 'supervised/deeplabv3plus_effl0_camvid-1-8.py'
SUPERVISED_HOSTS_RECIPE = 'supervised/deeplabv3plus_effl0_camvid-1-8_street-scenes.py'
CONFORMALSAM = 'conformalsam_camvid.py'
UNIMATCH = 'unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py'
ALLSPARK = 'allspark/allspark_deeplabv3plus_effl0_camvid-1-8.py'
TAU_CANDIDATES = (0.5, 0.7, 0.9, 0.95)
# hosts trained with their authors' street-scene recipe (their configs' optimizer, OHEM and
# threshold; configs/_base_/schedules/street_scenes_sgd.py), not the benchmark's lr; the
# supervised row of that recipe tells what the hosts' unlabeled images add under it
HOSTS = 'hosts'
ROWS = (
    Row('supervised', 'Supervised only (labeled images)', 'supervised', SUPERVISED),
    Row('raw', '+ raw annotator labels', '+ raw', CONFORMALSAM,
        _stage_one(filter='confidence', confidence_threshold=0.0), conformalsam=True),
    Row('threshold_0.9', '+ annotator labels with confidence >= 0.9', '+ t>=0.9',
        CONFORMALSAM, _stage_one(filter='confidence', confidence_threshold=0.9),
        conformalsam=True),
    Row('threshold_best', '+ annotator labels with confidence >= t* (t* chosen on the '
        'selection set)', '+ t>=t*', CONFORMALSAM, _stage_one(filter='confidence'),
        conformalsam=True, choice='tau'),
    Row('conformal_pixel', '+ conformal filtering, pixel mode, alpha 0.05 (the paper\'s)',
        '+ CP pixel\n0.05', CONFORMALSAM, _stage_one(mode='pixel', alpha=0.05),
        conformalsam=True),
    Row('conformal_pixel_filtering', '+ conformal filtering, pixel mode, the smallest alpha '
        'that filters', '+ CP pixel\nalpha*', CONFORMALSAM, _stage_one(mode='pixel'),
        conformalsam=True, choice='alpha'),
    Row('conformal_class', '+ conformal filtering, class mode, alpha 0.05',
        '+ CP class', CONFORMALSAM, _stage_one(mode='class', alpha=0.05), conformalsam=True),
    Row('risk', '+ risk-controlled labels (false-label rate <= target*, delta 0.1)',
        '+ risk', CONFORMALSAM, _stage_one(**_risk(0.05)), conformalsam=True,
        choice='risk_target'),
    Row('conformalsam', 'ConformalSAM (Stage I + II), the paper\'s filter', 'ConformalSAM',
        CONFORMALSAM, host='SelfReliance', conformalsam=True),
    Row('conformalsam_risk', 'ConformalSAM (Stage I + II), risk-controlled filter',
        'ConformalSAM\nrisk', CONFORMALSAM,
        {f'model.pseudo_label_head.{k}': v for k, v in _risk(0.05).items()},
        host='SelfReliance', conformalsam=True, choice='risk_target'),
    Row('supervised_hosts_recipe', 'Supervised only, the hosts\' street-scene recipe (lr 0.005, '
        'OHEM)', 'supervised\nhosts\' recipe', SUPERVISED_HOSTS_RECIPE, recipe=HOSTS),
    Row('unimatch', 'UniMatch', 'UniMatch', UNIMATCH, host='UniMatch', recipe=HOSTS),
    Row('unimatch_conformalsam', 'UniMatch + ConformalSAM', 'UniMatch\n+ CSAM',
        'unimatch_conformalsam_camvid.py', host='UniMatch', conformalsam=True, recipe=HOSTS),
    Row('allspark', 'AllSpark', 'AllSpark', ALLSPARK, host='AllSpark', recipe=HOSTS),
    Row('allspark_conformalsam', 'AllSpark + ConformalSAM', 'AllSpark\n+ CSAM',
        'allspark_conformalsam_camvid.py', host='AllSpark', conformalsam=True, recipe=HOSTS),
)
ROW_NAMES = tuple(r.name for r in ROWS)


def row_options(row, split, seed, protocol, group=None, choices=None):
    """``--cfg-options`` of one run: the split, schedule and seed shared by every row, the
    annotator cache of ``group`` (``protocol['annotators'][group]``) for rows that read one, and
    the chosen value (``choices[group]['tau' | 'alpha']``) for rows with a ``choice``."""
    iters = protocol['iters']
    opts = {
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.checkpoint.max_keep_ckpts': 1,
        'default_hooks.logger.interval': protocol['log_interval'],
        'randomness.seed': seed,
    }
    if row.recipe != HOSTS:
        opts['optim_wrapper.optimizer.lr'] = protocol['lr']
    if protocol.get('val_interval'):
        opts['train_cfg.val_interval'] = protocol['val_interval']
    if protocol.get('checkpoint_interval'):
        opts['default_hooks.checkpoint.interval'] = protocol['checkpoint_interval']
        opts['default_hooks.checkpoint.max_keep_ckpts'] = protocol.get('keep_checkpoints', 1)
    if protocol.get('workers'):
        opts['train_dataloader.num_workers'] = protocol['workers']
    opts.update(row_options_eval(protocol))
    split_dir = f'splits/camvid/{split}'
    if row.supervised:
        opts['train_dataloader.dataset.ann_file'] = f'{split_dir}/labeled.txt'
        opts['train_dataloader.batch_size'] = protocol['labeled_batch']
    else:
        opts['train_dataloader.dataset.labeled.ann_file'] = f'{split_dir}/labeled.txt'
        opts['train_dataloader.dataset.unlabeled.ann_file'] = f'{split_dir}/unlabeled.txt'
    if row.host == 'AllSpark':
        # the configs' 5 epochs of the unlabeled set in 2000 iterations, scaled to this schedule
        model = 'model.host' if row.conformalsam else 'model'
        opts[f'{model}.semi_train_cfg.memory_warmup_iters'] = max(1, iters // 5)
    if row.conformalsam:
        annotators = protocol.get('annotators') or {None: protocol.get('annotator_cache')}
        opts['train_dataloader.dataset.annotator_cache'] = annotators[group]
        if 'filter_device' in protocol:   # where the head filters (the same labels either way)
            opts[FILTER_DEVICE_OPTION] = protocol['filter_device']
    opts.update(row.options)
    if row.choice == 'tau':
        opts['model.pseudo_label_head.confidence_threshold'] = (choices or {})[group]['tau']
    elif row.choice == 'alpha':
        opts['model.pseudo_label_head.alpha'] = (choices or {})[group]['alpha']
    elif row.choice == 'risk_target':
        opts['model.pseudo_label_head.risk_cfg.target_error'] = (
            (choices or {})[group]['risk_target'])
    return opts


def _format(value):
    return 'None' if value is None else str(value)


def row_options_eval(protocol):
    """Where a run evaluates: its val loop on the selection set (the 0001TP frames of CamVid
    test, which every choice reads) when the protocol says so; val (0016E5) is then measured by
    ``tools/test.py`` on the final checkpoint (``test_on_val``)."""
    if not protocol.get('selection'):
        return {}
    return {
        'val_dataloader.dataset.data_prefix.img_path': 'camvid/images/test',
        'val_dataloader.dataset.data_prefix.seg_map_path': 'camvid/labels/test',
        'val_dataloader.dataset.ann_file': SELECTION_FILE,
    }


def run_dir(work_root, row, split, seed, group=None):
    """``WORK_ROOT/SPLIT/seedS[/GROUP]/ROW``: annotator rows per annotator group."""
    parts = [work_root, split, f'seed{seed}'] + ([group] if group else []) + [row.name]
    return osp.join(*parts)


def run_row(row, split, seed, protocol, work_root, log=print, group=None, choices=None,
            name=None, extra=None):
    """Train one row (unless its result exists) and return its result dict. ``name`` and
    ``extra`` options make a variant of the row (the threshold candidates)."""
    work_dir = run_dir(work_root, row, split, seed, group)
    if name:
        work_dir = osp.join(osp.dirname(work_dir), name)
    opts = row_options(row, split, seed, protocol, group, choices)
    opts.update(extra or {})
    config_dir = protocol.get('config_dir') or CONFIGS   # resolution.py's rewrites, if any
    annotator = (protocol.get('annotator_sha1') or {}).get(group) if row.conformalsam else None
    return run(osp.join(config_dir, row.config), opts, work_dir, protocol, log=log,
               result=dict(row=name or row.name, split=split, seed=seed, group=group,
                           annotator=annotator))


def run(config, opts, work_dir, protocol, log=print, result=None):
    """One training run of ``config`` with ``opts`` in ``work_dir``; resumable.

    A finished run (``result.json`` with the same options and annotator) is read, not trained.
    An unfinished one (``options.json`` with the same settings and a ``last_checkpoint``)
    resumes from its last checkpoint, its log appended. A work dir made with other options or
    another annotator (``result['annotator']``, the sha1 of its weights) is moved to
    ``WORK_DIR.old`` and the run starts afresh. While it trains, the run's latest
    ``Iter(train)`` line (with mmengine's remaining-time estimate) is printed every
    ``protocol['progress_seconds']`` (default 120 s).
    """
    opts = {k: _format(v) for k, v in opts.items()}
    annotator = (result or {}).get('annotator')
    settings = dict(opts, **({ANNOTATOR_KEY: annotator} if annotator else {}))
    result_path = osp.join(work_dir, 'result.json')
    options_path = osp.join(work_dir, 'options.json')
    stale = False
    if osp.exists(result_path):
        with open(result_path) as f:
            done = json.load(f)
        if done.get('options') == opts and done.get('annotator') == annotator:
            return done
        stale = True
    resume = False
    if osp.exists(options_path):
        with open(options_path) as f:
            stale = stale or json.load(f) != settings
        resume = not stale and osp.exists(osp.join(work_dir, 'last_checkpoint'))
    if stale:
        old = work_dir + '.old'
        shutil.rmtree(old, ignore_errors=True)
        os.replace(work_dir, old)
        log(f'  {work_dir} was made with other settings or another annotator; moved to {old}')
    os.makedirs(work_dir, exist_ok=True)
    dump_json(settings, options_path)
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir]
    if resume:
        cmd.append('--resume')
        log(f'  resuming from {open(osp.join(work_dir, "last_checkpoint")).read().strip()}')
    cmd += ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]
    log_path = osp.join(work_dir, 'train.log')
    start = time.perf_counter()
    _run_logged(cmd, log_path, log, protocol.get('progress_seconds', 120))
    wall = time.perf_counter() - start
    out = dict(result or {}, wall_seconds=wall, resumed=resume, options=opts,
               machine=machine(), **read_scalars(work_dir))
    if protocol.get('test_on_val'):
        out['val'] = test_checkpoints(config, opts, work_dir, log)
    dump_json(out, result_path)
    return out


def made_with(result, row, group, annotators):
    """Whether a finished run's result comes from the annotator weights that ``annotators``
    ({group: sha1 of the kept weights, None while there are none}) names for its group;
    always for a row that reads no annotator."""
    if not row.conformalsam:
        return True
    wanted = annotators.get(group)
    return wanted is not None and result.get('annotator') == wanted


def machine(cpuinfo='/proc/cpuinfo'):
    """This machine's CPU model and core count (what a run's speed depends on), e.g.
    'AMD EPYC, 2 cores'; the cost table compares the speeds of one machine's runs."""
    model = None
    try:
        with open(cpuinfo) as f:
            model = next((ln.split(':', 1)[1].strip() for ln in f
                          if ln.startswith('model name')), None)
    except OSError:
        pass
    return f'{model or platform.processor() or "unknown CPU"}, {os.cpu_count()} cores'


def free_cores(window=2.0):
    """Threads for a run: ``CAMVID_BENCHMARK_THREADS`` if set, else the cores idle while the
    run starts (the idle share of all cores over ``window`` seconds, from /proc/stat), at
    least 1. The load average would count the benchmark's own work of the last minutes (its
    label-quality pass, the previous run's test) as other work."""
    if os.environ.get('CAMVID_BENCHMARK_THREADS'):
        return int(os.environ['CAMVID_BENCHMARK_THREADS'])
    cores = os.cpu_count() or 1
    idle = idle_share(window)
    if idle is None:   # no /proc/stat: the 1-minute load average
        return max(1, min(cores, round(cores - os.getloadavg()[0])))
    return max(1, min(cores, round(cores * idle)))


def idle_share(window, stat='/proc/stat'):
    """The share of CPU time spent idle (idle + iowait) over ``window`` seconds, or None."""
    def read():
        with open(stat) as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]   # guest time is counted in user time
    try:
        total0, idle0 = read()
        time.sleep(window)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


def _run_logged(cmd, log_path, log, progress_seconds):
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(free_cores())
    with open(log_path, 'a') as out:
        out.write(f'\n$ OMP_NUM_THREADS={env["OMP_NUM_THREADS"]} {" ".join(cmd)}\n')
        out.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                proc.wait(timeout=progress_seconds)
                break
            except subprocess.TimeoutExpired:
                line = last_progress(log_path)
                if line:
                    log(f'    {line}')
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-25:])
        raise RuntimeError(f'{" ".join(cmd[:3])} failed with exit code {proc.returncode}; '
                           f'its log is {log_path}:\n{tail}')


def last_progress(log_path):
    """The latest ``Iter(train) [k/N] ... eta: ...`` of a log, shortened to its counters."""
    with open(log_path, errors='replace') as f:
        lines = [ln for ln in f if 'Iter(train)' in ln or 'Iter(val)' in ln]
    if not lines:
        return None
    m = re.search(r'(Iter\((?:train|val)\)\s*\[\s*\d+/\d+\]).*?(eta: \S+)?\s+time: (\S+)',
                  lines[-1])
    if not m:
        return lines[-1].strip()[-120:]
    return ' '.join(x for x in (m.group(1), m.group(2), f'time: {m.group(3)} s/it') if x)


KEPT_LINES = ('$ ', 'Iter(train)', 'Iter(val)', 'mIoU', 'ConformalSAM', 'Exp name', 'resumed',
              'GPU 0:', 'PyTorch: ')
PREDICTIONS = 'val_predictions'   # the report's picture of a run (report_predictions.py)


def keep_logs(work_dir, dest):
    """Copy what a run's numbers come from into ``dest`` (committed beside the report): its
    result.json (when it finished), the config it trained (mmengine's dump), its logs
    trimmed to the commands, the machine (GPU and PyTorch), the training / validation lines,
    mIoU tables and ConformalSAM's lines, and its predictions of the report's picture."""
    os.makedirs(dest, exist_ok=True)
    if osp.exists(osp.join(work_dir, 'result.json')):
        shutil.copyfile(osp.join(work_dir, 'result.json'), osp.join(dest, 'result.json'))
    if osp.isdir(osp.join(work_dir, PREDICTIONS)):
        shutil.copytree(osp.join(work_dir, PREDICTIONS), osp.join(dest, PREDICTIONS),
                        dirs_exist_ok=True)
    for name in os.listdir(work_dir):
        if name.endswith('.py'):
            shutil.copyfile(osp.join(work_dir, name), osp.join(dest, 'config.py'))
    for name in ('train.log', 'test_val.log'):
        path = osp.join(work_dir, name)
        if osp.exists(path):
            with open(path, errors='replace') as f:
                lines = [ln for ln in f if any(k in ln for k in KEPT_LINES) or ln.startswith('|')]
            with open(osp.join(dest, name), 'w') as f:
                f.writelines(lines)


def restore(dest, work_dir):
    """The other way round: a finished run kept in ``dest`` whose work dir is gone (a fresh
    machine, a cleaned work_dirs) gets its result.json and predictions back, so that it is
    read instead of trained again (``run`` still trains it when its options differ). A work
    dir where a run has started is left as it is. Returns whether it restored the run."""
    if (osp.exists(osp.join(work_dir, 'options.json'))
            or osp.exists(osp.join(work_dir, 'result.json'))
            or not osp.exists(osp.join(dest, 'result.json'))):
        return False
    os.makedirs(work_dir, exist_ok=True)
    if osp.isdir(osp.join(dest, PREDICTIONS)):
        shutil.copytree(osp.join(dest, PREDICTIONS), osp.join(work_dir, PREDICTIONS),
                        dirs_exist_ok=True)
    shutil.copyfile(osp.join(dest, 'result.json'), osp.join(work_dir, 'result.json'))
    return True


def checkpoints(work_dir):
    """``iter_N.pth`` files of a work dir, by N."""
    found = [(int(m.group(1)), osp.join(work_dir, f)) for f in os.listdir(work_dir)
             for m in [re.fullmatch(r'iter_(\d+)\.pth', f)] if m]
    return sorted(found)


def test_checkpoints(config, opts, work_dir, log=print):
    """val (0016E5) mIoU of every kept checkpoint by ``tools/test.py``: {iteration: mIoU}.
    Each is cached in ``test_val/iter_N.json``, so a resumed benchmark does not test twice."""
    out = {}
    test_opts = {k: v for k, v in opts.items() if not k.startswith('val_dataloader.')}
    for it, ckpt in checkpoints(work_dir):
        path = osp.join(work_dir, 'test_val', f'iter_{it}.json')
        if not osp.exists(path):
            tdir = osp.join(work_dir, 'test_val', f'iter_{it}')
            cmd = [sys.executable, osp.join(REPO, 'tools', 'test.py'), config, ckpt,
                   '--work-dir', tdir, '--cfg-options']
            cmd += [f'{k}={v}' for k, v in test_opts.items()]
            _run_logged(cmd, osp.join(work_dir, 'test_val.log'), log, 600)
            dump_json(dict(iteration=it, mIoU=_test_miou(tdir)), path)
        with open(path) as f:
            out[str(it)] = json.load(f)['mIoU']
    return out


def _test_miou(test_dir):
    runs = sorted(d for d in os.listdir(test_dir) if osp.isdir(osp.join(test_dir, d)))
    for d in reversed(runs):
        f = osp.join(test_dir, d, f'{d}.json')
        if osp.exists(f):
            with open(f) as fh:
                metrics = json.load(fh)
            return metrics['mIoU']
    raise FileNotFoundError(f'tools/test.py wrote no metrics JSON under {test_dir}')


def dump_json(obj, path):
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_scalars(work_dir):
    """Validation mIoU (final and per validation step) and the mean seconds per training
    iteration (per ConformalSAM stage where the run has stages) from mmengine's
    ``vis_data/scalars.json``; a resumed run has one per sitting, read in order."""
    runs = sorted(d for d in os.listdir(work_dir)
                  if osp.exists(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    entries = []
    for d in runs:
        with open(osp.join(work_dir, d, 'vis_data', 'scalars.json')) as f:
            entries += [json.loads(line) for line in f if line.strip()]
    curve = {}
    for e in entries:
        if 'mIoU' in e:
            curve[int(e['step'])] = e['mIoU']
    if not curve:
        raise ValueError(f'{work_dir}: the run logged no validation mIoU')
    train = [e for e in entries if 'iter' in e and 'time' in e and 'mIoU' not in e]
    # the first logged window holds start-up costs (data-loader workers, first allocations)
    steady = train[1:] if len(train) > 1 else train
    times = {'all': [e['time'] for e in steady]}
    for stage in (1, 2):
        times[f'stage{stage}'] = [e['time'] for e in steady
                                  if e.get('conformalsam_stage') == stage]
    calibration = [e for e in entries if 'conformal_kept_ratio' in e]
    out = dict(mIoU=curve[max(curve)], val_curve={str(k): curve[k] for k in sorted(curve)},
               seconds_per_iter={k: (sum(v) / len(v) if v else None)
                                 for k, v in times.items()})
    if calibration:
        out['calibration'] = {k: v for k, v in calibration[0].items()
                              if k.startswith('conformal_')}
    return out
