"""docs/results/camvid_full_resolution.md: the full-resolution runs (full_resolution.py), each
beside the half-resolution run of the same row and seed (the kept logs of run.py), with the
machine each ran on (read from its log); unfinished runs with how far they came."""
import json
import os
import os.path as osp
import re

import plan
from report_training import final_val
from training import FILTER_DEVICE_OPTION, run_dir

HALF_LOGS = osp.join('logs', 'camvid')
LOGS = osp.join('logs', 'camvid_full_resolution')
NAME = 'camvid_full_resolution.md'
MANIFEST = 'annotator_cache_info.json'   # the manifest of the cache the runs read


def half_result(out_dir, row, split, seed, group):
    """The half-resolution run's result.json (kept beside the report), or None."""
    path = osp.join(run_dir(osp.join(out_dir, HALF_LOGS), plan.ROW[row], split, seed, group),
                    'result.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine(log_path):
    """'GPU name, PyTorch version' (or 'CPU, ...') from mmengine's environment lines of a log."""
    if not osp.exists(log_path):
        return '?'
    gpu = torch = None
    with open(log_path, errors='replace') as f:
        for line in f:
            m = re.search(r'GPU 0: (.+)', line)
            gpu = gpu or (m and m.group(1).strip())
            m = re.search(r'PyTorch: (\S+)', line)
            torch = torch or (m and m.group(1))
    return f'{gpu or "CPU"}, PyTorch {torch or "?"}'


def training_speed(log_path):
    """(last iteration, max iterations, {stage: (mean seconds per iteration, mean data-loading
    seconds)}) from the ``Iter(train)`` lines of a log; the first logged window (start-up) is
    left out."""
    last, total, times = 0, None, {}
    first = True
    with open(log_path, errors='replace') as f:
        for line in f:
            m = re.search(r'Iter\(train\)\s*\[\s*(\d+)/(\d+)\].*?\btime: ([\d.]+)\s+'
                          r'data_time: ([\d.]+)', line)
            if not m:
                continue
            last, total = int(m.group(1)), int(m.group(2))
            if first:
                first = False
                continue
            stage = re.search(r'conformalsam_stage: (\d)', line)
            times.setdefault(f'Stage {stage.group(1)}' if stage else 'all', []).append(
                (float(m.group(3)), float(m.group(4))))
    return last, total, {k: tuple(sum(x) / len(v) for x in zip(*v)) for k, v in times.items()}


def annotator_text(out_dir, current):
    """Which annotator's cache the kept manifest describes: the kept weights' (sha1
    ``current``) or an earlier one's."""
    path = osp.join(out_dir, LOGS, MANIFEST)
    if not osp.exists(path):
        return ''
    with open(path) as f:
        manifest = json.load(f)
    evaluation = manifest.get('evaluation') or {}
    sha = (manifest.get('model') or {}).get('checkpoint_sha1') or '?'
    whose = ('these runs read' if sha == current else
             'the runs "made from an earlier annotator" (below) read')
    return (f' The cache {whose} ({LOGS}/{MANIFEST}): weights sha1 {sha[:12]}, '
            f'mIoU {100 * evaluation.get("mIoU", float("nan")):.2f} on CamVid train.')


def filter_device(result):
    """Where a run's pseudo-label head filtered: 'GPU' (``filter_device=None``, the head's
    default: where the batch is), 'CPU' (``'cpu'``), '-' for rows without the head."""
    if not plan.ROW[result['row']].conformalsam:
        return '-'
    device = (result.get('options') or {}).get(FILTER_DEVICE_OPTION, 'None')
    return 'CPU' if device == 'cpu' else 'GPU'


def finished_table(results, out_dir, supervised_runs=None):
    """The runs' table; "val vs supervised" against ``supervised_runs`` (default: the
    supervised runs among ``results``), each run beside the half-resolution run of the same
    row and seed made from the same annotator weights."""
    supervised = {r['seed']: final_val(r) for r in supervised_runs or results
                  if r['row'] == 'supervised'}
    lines = ['| row | seed | machine | val mIoU | val vs supervised | selection mIoU | val mIoU at '
             'half resolution | pseudo-label filter on | s/it | minutes |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        log = osp.join(run_dir(osp.join(out_dir, LOGS), plan.ROW[r['row']], r['split'],
                               r['seed'], r.get('group')), 'train.log')
        half = half_result(out_dir, r['row'], r['split'], r['seed'], r.get('group'))
        if half and half.get('annotator') != r.get('annotator'):
            half = None   # read the cache of other annotator weights
        val = final_val(r)
        base = supervised.get(r['seed']) if r['row'] != 'supervised' else None
        speed = (r.get('seconds_per_iter') or {}).get('all')
        lines.append(
            f'| {plan.ROW[r["row"]].label} | {r["seed"]} | {machine(log)} | {val:.1f} | '
            f'{"-" if base is None else f"{val - base:+.1f}"} | {r["mIoU"]:.1f} | '
            f'{"-" if half is None else f"{final_val(half):.1f}"} | {filter_device(r)} | '
            f'{"-" if speed is None else f"{speed:.3f}"} | {r["wall_seconds"] / 60:.1f} |')
    return '\n'.join(lines)


def unfinished_text(unfinished, out_dir):
    if not unfinished:
        return ''
    lines = ['## Unfinished runs', '',
             'Stopped (the sitting ended) or failed before their last iteration; where their '
             'work dir is kept, the command resumes them from their last checkpoint. How far '
             'each came, from its log:', '']
    for u in unfinished:
        log = osp.join(out_dir, u['log'])
        last, total, speeds = training_speed(log) if osp.exists(log) else (0, None, {})
        speed = ', '.join(f'{k} {t:.3f} s/it ({d:.3f} of it loading data)'
                          for k, (t, d) in sorted(speeds.items()))
        lines.append(f'- {u["run"]} ({machine(log)}): iteration {last} of {total or "?"}'
                     + (f'; {speed}' if speed else '') + f' ({u["log"]})')
    return '\n'.join(lines) + '\n'


def write(summary, finished, unfinished, out_dir, stale=()):
    """``stale``: the runs whose result was made from other annotator weights than the kept
    ones (the command trains them again)."""
    protocol = summary['protocol']
    done = {(r['row'], r['seed']) for r in finished}
    started = {(u['row'], u['seed']) for u in list(unfinished) + list(stale)}
    current = (protocol.get('annotator_sha1') or {}).get(summary.get('group'))
    not_started = [f'{row} (seed {s})' for s in summary['seeds'] for row in summary['rows']
                   if (row, s) not in done | started]
    text = f"""# CamVid at full resolution

`python benchmarks/camvid/full_resolution.py --iters {protocol['iters']} --seeds \
{' '.join(map(str, summary['seeds']))} --rows {' '.join(summary['rows'])}\
{' --filter-device cpu' if protocol.get('filter_device') == 'cpu' else ''}`

The half-resolution benchmark's runs (camvid.md: split 1/{summary['split'][2:]}, DeepLabV3+ on \
ImageNet-pretrained EfficientNet-Lite0, 4 labeled + 4 unlabeled images per iteration, SGD lr \
{protocol['lr']:g} with poly decay, {protocol['iters']} iterations, the strong cross-sequence \
annotator, ConformalSAM's self-reliance from 75% of the iterations) at {summary['resolution']}: \
every config rewritten by benchmarks/camvid/resolution.py (resizes to 480 x 360, crops and \
padding 320 px, OHEM's pixel count x 4), nothing else changed; {protocol.get('workers')} \
data-loader workers. The annotator's cache is at 480 x 360 at both resolutions, made from the \
same weights.{annotator_text(out_dir, current)} val (0016E5) gives the numbers, the selection set \
(0001TP) the validation during training, as at half resolution.

{finished_table(finished, out_dir)}

"val vs supervised": the run's val mIoU minus that of the full-resolution supervised run of the \
same seed. {'One seed' if len(summary['seeds']) == 1 else f"{len(summary['seeds'])} seeds"}: the \
half-resolution benchmark measures about 2 points between seeds of one row, so a difference \
below that is not an effect. "pseudo-label filter on": where the annotator rows' \
pseudo-label head filtered the cached annotator output (`filter_device`: None, the default, \
where the batch is, or 'cpu'; both give the same labels, benchmarks/bench_filter_device.py, \
and docs/annotators.md gives their speeds). Logs: {LOGS}/.

"""
    text += unfinished_text(unfinished, out_dir)
    if stale:
        text += ('\n## Made from an earlier annotator\n\nThese runs read the cache of other '
                 'weights of the strong annotator than the kept ones '
                 '(benchmarks/camvid/annotators/), made by the same command before its weights '
                 'were kept (training does not repeat bit for bit across machines): not '
                 'comparable with the runs above or with the half-resolution runs made from the '
                 'kept weights (only with those made from the same cache, where they are kept), '
                 'and trained again by the command.\n\n'
                 + finished_table(stale, out_dir, supervised_runs=finished) + '\n')
    if not_started:
        text += '\nNot started: ' + ', '.join(not_started) + '.\n'
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, NAME)
    with open(path, 'w') as f:
        f.write(text)
    return path
