"""The training parts of docs/results/camvid.md: the headline table with its spreads, the
choices, the cost, the mIoU picture (the expected effects are report_effects.py's).

Reads results.json's ``summary`` and ``training`` (one dict per finished run; the benchmark runs
in several sittings, so the list may be partial). A run's final number is its val mIoU (the
0016E5 frames) at its last tested iteration; the selection-set mIoU (the 0001TP frames of test)
is what the choices read and is shown beside it, never as a result.
"""
import collections
import math
import statistics

import plan
from speed import TIMING_ITERS
from training import ROWS

ROW = {r.name: r for r in ROWS}
MIN_SEEDS = 3          # rows with fewer finished seeds are marked
MARK = '†'
CANDIDATE = 'threshold_candidate_'
GROUPS = ('strong', 'weak')
PAPER_ALPHA = 0.05
RISK_TARGET = 0.05     # the risk rows' target when no target* is recorded (training.ROWS)


def risk_method(target):
    """quality.methods()' name of the risk rows' filter at ``target``."""
    return f'risk false_label_rate pixel, target {target:g}'


def risk_target(s, group, split=None):
    """The risk rows' target of ``group``: target* chosen on the labeled images of ``split``
    (default: the quality split), else RISK_TARGET."""
    split = split or s.get('quality_split', '1-8')
    chosen = (((s.get('risk_target_choices') or {}).get(split) or {}).get(group) or {})
    return chosen.get('risk_target') or RISK_TARGET


COST_CLASSES = {'supervised': 'Supervised only',
                'supervised_hosts_recipe': 'Supervised only, the hosts\' recipe (OHEM)',
                'stage_one': 'Stage I only (annotator labels, any filter; t* candidates too)',
                'conformalsam': 'ConformalSAM (Stage I + II)', 'unimatch': 'UniMatch',
                'unimatch_conformalsam': 'UniMatch + ConformalSAM', 'allspark': 'AllSpark',
                'allspark_conformalsam': 'AllSpark + ConformalSAM'}


# --- numbers ----------------------------------------------------------------------------------
def final_val(r):
    """A run's val mIoU at its largest tested iteration (None: not tested on val)."""
    val = r.get('val') or {}
    return val[max(val, key=int)] if val else None


def selection(r):
    return r.get('mIoU')


def by_key(training):
    """{(row, group, split): {seed: result}} of the finished runs."""
    out = {}
    for r in training:
        out.setdefault((r['row'], r.get('group'), r['split']), {})[r['seed']] = r
    return out


def groups(s):
    return tuple((s.get('protocol') or {}).get('annotators') or GROUPS)


def row_keys(s, runs, split):
    """(row, group) of the split's planned and finished runs, ROWS order, groups in order."""
    planned = {(r.row, r.group) for r in plan.make_plan(s['seeds'], [split], s.get('rows'))
               if r.tau is None}
    have = planned | {(row, g) for row, g, sp in runs if sp == split and row in ROW}
    order = [(r.name, g) for r in ROWS for g in ((None, ) + groups(s) + tuple(GROUPS))]
    return [k for k in dict.fromkeys(order) if k in have]


def label(key):
    row, group = key
    return ROW[row].label + (f' ({group})' if group else '')


def spread(values):
    """(mean, sample std or None for one value, n); (None, None, 0) for no value."""
    if not values:
        return None, None, 0
    sd = statistics.stdev(values) if len(values) > 1 else None
    return statistics.mean(values), sd, len(values)


def fmt_spread(values, sign=False, n=True):
    mean, sd, k = spread(values)
    if mean is None:
        return '-'
    f = '+.1f' if sign else '.1f'
    text = f'{mean:{f}}' + ('' if sd is None else f' ± {sd:.1f}')
    return text + (f' ({k})' if n else '') + (f' {MARK}' if n and k < MIN_SEEDS else '')


def values(runs, key, split, metric=final_val):
    seeds = runs.get(key + (split, ), {})
    return {s: metric(r) for s, r in sorted(seeds.items()) if metric(r) is not None}


def paired(runs, a, b, split, metric=final_val):
    """{seed: metric(a) - metric(b)} over the seeds both have."""
    va, vb = values(runs, a, split, metric), values(runs, b, split, metric)
    return {s: va[s] - vb[s] for s in va if s in vb}


# --- the headline table -----------------------------------------------------------------------
def headline(s, training, split):
    runs = by_key(training)
    lines = [f'### Split {frac(split)}', '',
             '| method | val mIoU (seeds) | selection mIoU | val vs supervised, same seed |',
             '|---|---|---|---|']
    for key in row_keys(s, runs, split):
        diff = ('-' if key == ('supervised', None) else
                fmt_spread(list(paired(runs, key, ('supervised', None), split).values()),
                           sign=True))
        sel = spread(list(values(runs, key, split, selection).values()))[0]
        lines.append(f'| {label(key)} | {fmt_spread(list(values(runs, key, split).values()))}'
                     f" | {'-' if sel is None else f'{sel:.1f}'} | {diff} |")
    return lines + [''] + choices_text(s, training, split) + calibration_lines(runs, split)


def choices_text(s, training, split):
    lines = [_tau_text(s, training, split)]
    alphas = (s.get('alpha_choices') or {}).get(split) or {}
    if alphas:
        parts = []
        for group, c in alphas.items():
            kept = {row['alpha']: row['kept'] for row in c.get('table', [])}
            if c.get('alpha') is None:
                parts.append(f'{group}: none of the grid ({", ".join(f"{a:g}" for a in kept)}) '
                             'removes enough, so the row does not run')
            else:
                parts.append(f"{group}: alpha* = {c['alpha']:g} (keeps "
                             f"{100 * kept.get(c['alpha'], math.nan):.1f}% of the labeled "
                             'pixels)')
        minimum = next(iter(alphas.values())).get('min_removed', 0.01)
        lines.append(f'alpha* (labeled images only): the smallest alpha of the grid whose '
                     f'pixel-mode filter removes at least {100 * minimum:g}% of the labeled '
                     'images\' pixels; ' + '; '.join(parts) + '.')
    lines.append(risk_target_text(s, split))
    return [x for line in lines if line for x in (line, '')]


def _tau_text(s, training, split):
    found = {}
    for r in training:
        if r['split'] != split or r.get('group') != 'strong' or r['seed'] != min(s['seeds']):
            continue
        if r['row'] == 'threshold_0.9':
            found[0.9] = selection(r)
        elif r['row'].startswith(CANDIDATE):
            found[float(r['row'][len(CANDIDATE):])] = selection(r)
    cands = ', '.join(f'{t:g}: {m:.1f}' for t, m in sorted(found.items())) or 'none finished'
    tau = (s.get('tau_choices') or {}).get(split)
    head = f't* = {tau:g}' if tau is not None else 't*: not chosen yet'
    return (f'{head}: the candidate threshold with the best selection-set mIoU of its Stage I '
            f'run (strong annotator, seed {min(s["seeds"])}; selection mIoU by candidate: '
            f'{cands}).')


def calibration_lines(runs, split):
    """What the runs' calibrations logged (mean over the seeds)."""
    lines = []
    for (row, group, sp), seeds in sorted(runs.items(), key=lambda kv: _order(kv[0])):
        cals = [r['calibration'] for r in seeds.values() if r.get('calibration')]
        if sp != split or not cals or row not in ROW:
            continue
        kept, cov, risk = ([c[k] for c in cals if k in c] for k in (
            'conformal_kept_ratio', 'conformal_holdout_coverage', 'conformal_estimated_risk'))
        lines.append(f'| {label((row, group))} | {threshold_text(cals[0])} | {mean_pct(kept)} '
                     f'| {mean_pct(cov)} | {mean_pct(risk)} |')
    if not lines:
        return []
    return ['Calibration logged by the runs (mean over the seeds): kept % is of the labeled '
            'images\' pixels for the conformal filter and of the unlabeled images\' pixels for '
            'the risk filter; held-out coverage by 5-fold cross-calibration; estimated risk on '
            'the labeled images.', '',
            '| row | q / t | kept % | held-out coverage % | estimated risk % |',
            '|---|---|---|---|---|'] + lines + ['']


def _order(key):
    row, group = key[:2]
    names = [r.name for r in ROWS]
    return (names.index(row) if row in names else len(names),
            GROUPS.index(group) if group in GROUPS else -1)


def threshold_text(cal):
    """'q 0.123' (pixel mode), 'q 0.100-0.400 (per class)' (class mode), or t likewise."""
    for key, name in (('conformal_q', 'q'), ('conformal_t', 't')):
        if key in cal:
            return f'{name} {cal[key]:.3f}'
        per_class = [v for k, v in cal.items() if k.startswith(key + '/')]
        if per_class:
            return f'{name} {min(per_class):.3f}-{max(per_class):.3f} (per class)'
    return '-'


def mean_pct(xs):
    return f'{100 * statistics.mean(xs):.1f}' if xs else '-'


def frac(split):
    return split.replace('-', '/')


def training_section(s, training):
    lines = ['## Semi-supervised results (mIoU, %)', '',
             'val mIoU: mean ± std over the seeds (their number in brackets; '
             f'{MARK}: fewer than {MIN_SEEDS}) at the last iteration. Selection mIoU: the '
             'mean over the same runs on the selection set, the set every choice reads (shown '
             'for the choices, not a result). Last column: mean ± std of the seed-by-seed '
             'differences val(row, seed s) - val(supervised, seed s). The Stage I rows train on '
             'the labeled images plus the annotator\'s labels of the unlabeled images, filtered '
             'as the row says; "ConformalSAM" adds Stage II, where the model labels the '
             'unlabeled images itself.', '']
    for split in s['splits']:
        lines += headline(s, training, split)
    lines.append('![val mIoU per method](camvid_miou.png)')
    return '\n'.join(lines)




def risk_target_text(s, split):
    """How target* was chosen, and what it is per annotator."""
    chosen = (s.get('risk_target_choices') or {}).get(split) or {}
    if not chosen:
        return ''
    parts = []
    for group, c in chosen.items():
        table = ', '.join(f"{row['target']:g}: " + (
            f"t = {row['threshold']:.3f}" if row['threshold'] is not None else
            f"none ({row['n']} images, {row['n_needed']} needed with no error observed)"
            if row['n'] < row['n_needed'] else 'none certified') for row in c['table'])
        parts.append(f"{group}: target* = "
                     + ('none, so the risk rows do not run' if c['risk_target'] is None
                        else f"{c['risk_target']:g}") + f' ({table})')
    return ('target* (labeled images only): the smallest target of the grid at which the '
            'risk-controlled filter (false-label rate, pixel mode, delta 0.1) certifies a '
            'threshold; a smaller target keeps no pseudo-label and repeats the supervised row. '
            + '; '.join(parts) + '.')


# --- cost -------------------------------------------------------------------------------------
def cost_class(row):
    if row.startswith(CANDIDATE):
        return 'stage_one'
    r = ROW[row]
    if r.host == 'none':
        return 'stage_one' if r.conformalsam else row
    if r.host == 'SelfReliance':
        return 'conformalsam'
    return r.host.lower() + ('_conformalsam' if r.conformalsam else '')


def _per_iter(runs, key):
    """The median over the runs: a run slowed by other work on the machine moves it little."""
    v = [r['seconds_per_iter'][key] for r in runs if (r.get('seconds_per_iter') or {}).get(key)]
    return statistics.median(v) if v else None


UNRECORDED = 'a machine not recorded'


def machine_of(r):
    return r.get('machine') or UNRECORDED


def cost_section(s, training, quality):
    lines = ['## Cost', '']
    machines = collections.Counter(machine_of(r) for r in training)
    reference = machines.most_common(1)[0][0] if training else None
    classes = {}
    for r in training:
        if machine_of(r) == reference:   # speeds of different CPUs are not compared
            classes.setdefault(cost_class(r['row']), []).append(r)
    base = _per_iter(classes.get('supervised', []), 'all')
    timed = (s.get('supervised_timing') or {}).get(reference)
    if base:
        base_text = ''
    elif timed:
        base, base_text = timed, (
            f' No supervised run of the benchmark on it: the ratio\'s supervised speed '
            f'({timed:.3f} s / iter) is a {TIMING_ITERS}-iteration timing run of the supervised '
            'row there (logs/camvid/speed/).')
    else:
        base_text = ' No supervised run on it yet, so no ratio.'
    if training:
        others = ', '.join(f'{n} on {m}' for m, n in machines.items() if m != reference)
        lines += ['Seconds per training iteration, measured by the runs (mean over each run\'s '
                  'logged windows, its first excluded, then the median over the runs, which a '
                  'run slowed by other work on the machine moves little). Ratio: to '
                  f'supervised. The runs of one machine only: {reference} '
                  f'({machines[reference]} of the {len(training)} finished runs'
                  + (f'; the others: {others}' if others else '') + ').' + base_text, '',
                  '| cost class | runs | s / iter | Stage I | Stage II | ratio | wall time, h |',
                  '|---|---|---|---|---|---|---|']
        for name, text in COST_CLASSES.items():
            rs = classes.get(name)
            if not rs:
                continue
            spi = _per_iter(rs, 'all')
            ratio = f'{spi / base:.2f}x' if spi and base else '-'
            lines.append(f"| {text} | {len(rs)} | {_f(spi)} | {_f(_per_iter(rs, 'stage1'))} | "
                         f"{_f(_per_iter(rs, 'stage2'))} | {ratio} | "
                         f"{sum(r['wall_seconds'] for r in rs) / 3600:.2f} |")
        total = sum(r['wall_seconds'] for r in training)
        lines += ['', f'Finished runs: {len(training)}, {total / 3600:.1f} h of wall time in all '
                  '(training, selection-set validation and the val test).']
    seconds = sum(q.get('seconds', 0) for q in (quality or {}).values())
    if seconds:
        lines.append(f'Pseudo-label quality (every annotator above): {seconds / 60:.1f} min.')
    lines += ['', 'Annotator caches on disk (made once, before training; Stage I reads them):', '']
    for group, c in (s.get('caches') or {}).items():
        topk = 'every class' if c.get('topk') is None else f"top-{c['topk']} classes"
        made = (s.get('annotator_seconds') or {}).get(group)
        lines.append(f"- {group}: {c['bytes'] / 2**20:.0f} MiB for {c['entries']} images "
                     f"({c['bytes'] / max(c['entries'], 1) / 2**20:.2f} MiB per image; {topk}, "
                     f"codec '{c.get('codec')}')"
                     + (f'; trained and cached in {made / 60:.1f} min in this sitting'
                        if made else '') + '.')
    if s.get('wall_seconds'):
        lines.append(f"\nThe latest sitting of run.py took {s['wall_seconds'] / 60:.1f} min on "
                     f"{s.get('threads')} CPU threads.")
    return '\n'.join(lines)


def _f(x):
    return '-' if x is None else f'{x:.3f}'


# --- the picture ------------------------------------------------------------------------------
def plot_miou(s, training, path):
    """val mIoU per row: bars at the mean, error bars at the std, a dot per seed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    runs = by_key(training)
    splits = [sp for sp in s['splits'] if any(k[2] == sp for k in runs)]
    keys = list(dict.fromkeys(k for sp in splits for k in row_keys(s, runs, sp)))
    fig, ax = plt.subplots(figsize=(max(8, 0.95 * len(keys)), 4.4))
    width = 0.8 / max(len(splits), 1)
    top = 1.0
    for j, sp in enumerate(splits):
        for i, key in enumerate(keys):
            v = list(values(runs, key, sp).values())
            x = i + (j - (len(splits) - 1) / 2) * width
            if not v:
                ax.annotate('not run yet', (x, 1), ha='center', va='bottom', fontsize=6,
                            rotation=90, color='0.5')
                continue
            mean, sd, n = spread(v)
            ax.bar(x, mean, width, color=f'C{j}', alpha=0.55, yerr=sd or 0, capsize=2,
                   label=f'{frac(sp)} labeled')
            ax.plot([x] * len(v), v, 'o', color='k', ms=2.5)
            ax.annotate(f'{mean:.1f}' + (f' {MARK}' if n < MIN_SEEDS else ''), (x, max(v)),
                        ha='center', va='bottom', fontsize=6, xytext=(0, 2),
                        textcoords='offset points')
            top = max(top, max(v))
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([ROW[r].short + (f'\n({g})' if g else '') for r, g in keys], fontsize=7)
    ax.set_ylabel('val mIoU (%)')
    ax.set_title(f'CamVid val: mean (bar), std (error bar), seeds (dots; {MARK}: fewer than '
                 f'{MIN_SEEDS}); same network and schedule for every row', fontsize=9)
    ax.grid(axis='y', alpha=0.3)
    ax.set_ylim(0, 1.15 * top)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc='upper right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
