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
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    short: str                   # for plots
    config: str
    options: dict = field(default_factory=dict)
    host: str = 'none'           # the host method, for the cost table
    conformalsam: bool = False   # ConformalSAM rewrites the config (Stage I at least)


def _stage_one(**csam):
    return {f'conformalsam.{k}': v for k, v in dict(csam, self_reliance_at=None).items()}


SUPERVISED = 'supervised/deeplabv3plus_effl0_camvid-1-8.py'
CONFORMALSAM = 'conformalsam_camvid.py'
UNIMATCH = 'unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py'
ALLSPARK = 'allspark/allspark_deeplabv3plus_effl0_camvid-1-8.py'
ROWS = (
    Row('supervised', 'Supervised only (labeled images)', 'supervised', SUPERVISED),
    Row('raw', '+ raw annotator labels', '+ raw', CONFORMALSAM,
        _stage_one(filter='confidence', confidence_threshold=0.0), conformalsam=True),
    Row('threshold_0.5', '+ annotator labels with confidence >= 0.5', '+ t>=0.5',
        CONFORMALSAM, _stage_one(filter='confidence', confidence_threshold=0.5),
        conformalsam=True),
    Row('threshold_0.9', '+ annotator labels with confidence >= 0.9', '+ t>=0.9',
        CONFORMALSAM, _stage_one(filter='confidence', confidence_threshold=0.9),
        conformalsam=True),
    Row('conformal_pixel', '+ conformal filtering, pixel mode (Stage I only)',
        '+ conformal\npixel', CONFORMALSAM, _stage_one(mode='pixel'), conformalsam=True),
    Row('conformal_class', '+ conformal filtering, class mode (Stage I only)',
        '+ conformal\nclass', CONFORMALSAM, _stage_one(mode='class'), conformalsam=True),
    Row('conformalsam', 'ConformalSAM (Stage I + II)', 'ConformalSAM', CONFORMALSAM,
        host='SelfReliance', conformalsam=True),
    Row('unimatch', 'UniMatch', 'UniMatch', UNIMATCH, host='UniMatch'),
    Row('unimatch_conformalsam', 'UniMatch + ConformalSAM', 'UniMatch\n+ CSAM',
        'unimatch_conformalsam_camvid.py', host='UniMatch', conformalsam=True),
    Row('allspark', 'AllSpark', 'AllSpark', ALLSPARK, host='AllSpark'),
    Row('allspark_conformalsam', 'AllSpark + ConformalSAM', 'AllSpark\n+ CSAM',
        'allspark_conformalsam_camvid.py', host='AllSpark', conformalsam=True),
)
ROW_NAMES = tuple(r.name for r in ROWS)


def row_options(row, split, seed, protocol):
    """``--cfg-options`` of one run: the split, schedule and seed shared by every row."""
    iters = protocol['iters']
    opts = {
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.checkpoint.max_keep_ckpts': 1,
        'default_hooks.logger.interval': protocol['log_interval'],
        'optim_wrapper.optimizer.lr': protocol['lr'],
        'randomness.seed': seed,
    }
    split_dir = f'splits/camvid/{split}'
    if row.name == 'supervised':
        opts['train_dataloader.dataset.ann_file'] = f'{split_dir}/labeled.txt'
        opts['train_dataloader.batch_size'] = protocol['labeled_batch']
    else:
        opts['train_dataloader.dataset.labeled.ann_file'] = f'{split_dir}/labeled.txt'
        opts['train_dataloader.dataset.unlabeled.ann_file'] = f'{split_dir}/unlabeled.txt'
    if row.host == 'AllSpark':
        # the configs' 5 epochs of the unlabeled set in 2000 iterations, scaled to this schedule
        opts['model.semi_train_cfg.memory_warmup_iters'] = max(1, iters // 5)
    if row.conformalsam:
        opts['conformalsam.annotator_cache'] = protocol['annotator_cache']
    opts.update(row.options)
    return opts


def _format(value):
    return 'None' if value is None else str(value)


def run_row(row, split, seed, protocol, work_root, log=print):
    """Train one row (unless its result exists) and return its result dict."""
    work_dir = osp.join(work_root, split, f'seed{seed}', row.name)
    result_path = osp.join(work_dir, 'result.json')
    opts = row_options(row, split, seed, protocol)
    if osp.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if result.get('options') == {k: _format(v) for k, v in opts.items()}:
            return result
        log(f'  {result_path} was made with other settings; training again')
    os.makedirs(work_dir, exist_ok=True)
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), osp.join(CONFIGS, row.config),
           '--work-dir', work_dir, '--cfg-options']
    cmd += [f'{k}={_format(v)}' for k, v in opts.items()]
    log_path = osp.join(work_dir, 'train.log')
    start = time.perf_counter()
    with open(log_path, 'w') as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-25:])
        raise RuntimeError(f'training row {row.name!r} (split {split}, seed {seed}) failed with '
                           f'exit code {proc.returncode}; its log is {log_path}:\n{tail}')
    result = dict(row=row.name, split=split, seed=seed, wall_seconds=wall,
                  options={k: _format(v) for k, v in opts.items()},
                  **read_scalars(work_dir))
    tmp = result_path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, result_path)
    return result


def read_scalars(work_dir):
    """Final val mIoU and the mean seconds per training iteration (per ConformalSAM stage
    where the run has stages) from mmengine's ``vis_data/scalars.json`` of the run."""
    runs = sorted(d for d in os.listdir(work_dir)
                  if osp.exists(osp.join(work_dir, d, 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(osp.join(work_dir, runs[-1], 'vis_data', 'scalars.json')) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    miou = [e['mIoU'] for e in entries if 'mIoU' in e]
    if not miou:
        raise ValueError(f'{work_dir}: the run logged no validation mIoU')
    train = [e for e in entries if 'iter' in e and 'time' in e and 'mIoU' not in e]
    # the first logged window holds start-up costs (data-loader workers, first allocations)
    steady = train[1:] if len(train) > 1 else train
    times = {'all': [e['time'] for e in steady]}
    for stage in (1, 2):
        times[f'stage{stage}'] = [e['time'] for e in steady
                                  if e.get('conformalsam_stage') == stage]
    calibration = [e for e in entries if 'conformal_kept_ratio' in e]
    out = dict(mIoU=miou[-1], seconds_per_iter={
        k: (sum(v) / len(v) if v else None) for k, v in times.items()})
    if calibration:
        out['calibration'] = {k: v for k, v in calibration[0].items()
                              if k.startswith('conformal_')}
    return out
