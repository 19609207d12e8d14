"""docs/results/camvid_risk.md (run.py --risk-only): the risk-controlled filter's labels on the
unlabeled images of a split, calibrated on its labeled images, against the paper's filter and
the raw labels, with what the numbers show."""
import math
import os
import os.path as osp

from report import pct
from report_training import frac


def write_risk(q, out_dir, split):
    """docs/results/camvid_risk.md from ``run.run_risk_quality``'s results."""
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'camvid_risk.md')
    with open(path, 'w') as f:
        f.write(_risk_section(q, split) + '\n')
    return path


def _fmt_t(values):
    finite = [v for v in values if v is not None and not math.isinf(v)]
    if not finite:
        return 'inf (keep nothing)'
    if len(set(values)) == 1:
        return f'{finite[0]:.4f}'
    lo, hi = min(finite), max(finite)
    inf = sum(1 for v in values if v is None or math.isinf(v))
    return (f'{lo:.3f}' if lo == hi else f'{lo:.3f}-{hi:.3f}') + (f' ({inf} x inf)' if inf
                                                                   else '')


def _risk_section(q, split):
    lines = [
        f"# CamVid: risk-controlled pseudo-labels (split {frac(split)}: calibrated on its "
        f"{q['labeled']} labeled images, measured on its {q['unlabeled']} unlabeled images)", '',
        'Made by `benchmarks/camvid/run.py --risk-only` (no training) with the strong '
        'cross-sequence annotator (`tools/train_camvid_annotator.py`: trained on Seq05VD only, '
        'full resolution, its cached probabilities on CamVid train). "risk R mode, target x" '
        'keeps the annotator\'s argmax '
        'where its probability is >= t, t chosen on the labeled images only '
        '(`RiskCalibrator`, 1024 bins, delta 0.1, class mode with the pooled fallback; '
        '[conformal.md](../conformal.md#risk-controlled-pseudo-labels)). Every other column is '
        'measured on the ground truth of the unlabeled images: kept = kept / all pixels; '
        'precision = correct / kept pixels with a ground-truth label (the false label rate is '
        '1 - precision); kept & wrong = kept wrong pixels / pixels with a ground-truth label '
        '(what \'kept_error\' controls). Estimated risk: the labeled images\' mean per-image '
        'risk at t, with its 90% Hoeffding-Bentkus interval.', '',
        '| labels | t | kept % | precision % | kept & wrong % | outcome on the labeled images |',
        '|---|---|---|---|---|---|']
    thresholds = q['thresholds']
    for name, m in q['methods'].items():
        if m['kind'] == 'conformal' and m['mode'] == 'class':
            continue
        if m['kind'] == 'risk':
            cal = q['risk_calibration'][name]
            pooled = cal['groups'][0]
            lo, hi = pooled['risk_interval']
            own = [g for g in cal['groups'][1:]]
            if cal['mode'] == 'pixel':
                outcome = (f"{pooled['source']}, {pooled['n']} images (>= {pooled['n_needed']}"
                           f" needed); est. risk {100 * pooled['risk']:.2f}% "
                           f"[{100 * lo:.2f}, {100 * hi:.2f}]")
            else:
                calibrated = sum(g['source'] == 'calibrated' for g in own)
                nothing = sum(g['source'] == 'keep_nothing' for g in own)
                fallback = len(own) - calibrated - nothing
                outcome = (f'{calibrated} classes calibrated, {nothing} keep nothing, '
                           f'{fallback} on the pooled fallback (pooled t: {pooled["source"]})')
            t = _fmt_t([math.inf if v is None else v for v in thresholds[name]])
        elif m['kind'] == 'threshold':
            t, outcome = f"{m['tau']:g}", 'fixed (no calibration)'
        elif m['kind'] == 'conformal':
            t = f"1 - q = {1 - thresholds[name][0]:.4f}"
            outcome = f"paper's filter, pixel mode, alpha {m['alpha']:g}"
        else:
            t, outcome = '0', 'the annotator\'s argmax everywhere'
        precision = pct(m['precision']) if m['kept_ratio'] else '- (none kept)'
        lines.append(f"| {name} | {t} | {pct(m['kept_ratio'])} | {precision} | "
                     f"{pct(m.get('kept_wrong'))} | {outcome} |")
    classes = list(q['methods']['raw']['per_class_precision'])
    class_rows = [n for n, m in q['methods'].items()
                  if m['kind'] == 'risk' and m['mode'] == 'class']
    if class_rows:
        lines += ['', 'Class mode: t_k per class (inf: keep nothing; (p): the pooled fallback, '
                  'too few labeled images predict the class for its own guarantee) and the '
                  'actual precision (%) of each class\'s kept labels on the unlabeled images:',
                  '', '| labels | ' + ' | '.join(classes) + ' |',
                  '|---|' + '---|' * len(classes)]
        for name in class_rows:
            cal = q['risk_calibration'][name]
            m = q['methods'][name]
            cells = []
            for g in cal['groups'][1:]:
                t = 'inf' if g['threshold'] is None else f"{g['threshold']:.3f}"
                mark = ' (p)' if g['source'].startswith('fallback') else ''
                cells.append(f"{t}{mark}: {pct(m['per_class_precision'][g['name']])}")
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
        needed = {}
        for name in class_rows:
            cal = q['risk_calibration'][name]
            needed[(cal['risk'], cal['target'])] = cal['groups'][0]['n_needed']
        lines += ['', 'Labeled images needed for any certificate (zero observed risk): '
                  + '; '.join(f'{r} at target {t:g}: {n}' for (r, t), n in needed.items())
                  + '. Per class, the count is of the labeled images in which the annotator '
                  'predicts the class.']
    lines += ['', '## What the numbers show', ''] + risk_findings(q)
    return '\n'.join(lines)


def _actual_error(m):
    """The measured counterpart of a risk row's target on the unlabeled images: the error of
    the kept labels (1 - precision) for 'false_label_rate', the kept-and-wrong share of the
    labeled pixels for 'kept_error'."""
    if m['risk'] == 'false_label_rate':
        return 1 - m['precision'], 'error of the kept labels'
    return m['kept_wrong'], 'kept-and-wrong share of the labeled pixels'


def _why_nothing(cal):
    """Why a risk row kept no unlabeled pixel, from its calibration's groups."""
    pooled, own = cal['groups'][0], cal['groups'][1:]
    if pooled['source'] == 'calibrated':
        why = (f"t = {pooled['threshold']:.4f} certified on {pooled['n']} labeled images, but "
               'no unlabeled pixel is that confident')
    elif pooled['n'] < pooled['n_needed']:
        why = (f"{pooled['n']} labeled images, {pooled['n_needed']} needed even with no error "
               'observed')
    else:
        why = (f"{pooled['n']} labeled images (>= {pooled['n_needed']} needed), but no "
               'threshold passes at the error observed on them')
    if cal['mode'] == 'class':
        count = {s: sum(g['source'].startswith(s) for g in own)
                 for s in ('calibrated', 'keep_nothing', 'fallback')}
        why = (f"per class: {count['fallback']} of {len(own)} classes on the pooled fallback "
               f"(too few labeled images predict them), {count['keep_nothing']} certify no "
               f"threshold, {count['calibrated']} certify one that no unlabeled pixel reaches; "
               f'pooled: {why}')
    return why


def _class_findings(rows, cal):
    """Classes of the class-mode rows whose kept labels on the unlabeled images are less
    precise than 1 - target, with the share of their labeled calibration pixels kept at t."""
    lines = []
    for name, m in rows.items():
        if m['mode'] != 'class' or not m['kept_ratio']:
            continue
        low = []
        for g in cal[name]['groups'][1:]:
            precision = m['per_class_precision'].get(g['name'])
            if (g['source'] == 'calibrated' and precision is not None
                    and not math.isnan(precision) and precision < 1 - m['target']):
                low.append(f"{g['name']} (t {g['threshold']:.3f}: precision "
                           f"{pct(precision)}%; on the labeled images t keeps "
                           f"{100 * g['kept_ratio']:.2g}% of the pixels labeled {g['name']})")
        if not low:
            continue
        if m['risk'] == 'false_label_rate':
            why = ('a threshold that keeps (almost) nothing on the labeled images is certified '
                   'trivially, since an image that keeps nothing has error 0 by definition, '
                   'and says little about the few unlabeled images where it keeps pixels')
        else:
            why = ("'kept_error' bounds the share of the pixels labeled k that are kept and "
                   'wrong, not the precision of the kept ones: keeping a fraction f of them, '
                   'precision can be as low as 1 - target / f')
        lines.append(f'- **{name}: classes below 1 - target in precision**: '
                     + '; '.join(low) + f'. Why: {why}.')
    return lines


def risk_findings(q):
    """Bullets, computed from the results, on what the risk rows show: which settings keep
    nothing and why (images available against images needed), and for the others whether the
    error measured on the unlabeled images' ground truth stays within the target."""
    rows = {n: m for n, m in q['methods'].items() if m['kind'] == 'risk'}
    cal = q['risk_calibration']
    lines = []
    nothing, within, above = [], [], []
    for name, m in rows.items():
        if not m['kept_ratio']:
            nothing.append(f'{name} ({_why_nothing(cal[name])})')
            continue
        error, what = _actual_error(m)
        text = (f"{name}: keeps {pct(m['kept_ratio'])}% of the unlabeled pixels, "
                f"{what} {100 * error:.2f}% (target {100 * m['target']:g}%), precision "
                f"{pct(m['precision'])}%")
        (within if error <= m['target'] else above).append(text)
    if nothing:
        lines.append(f'- **Keep nothing** ({len(nothing)} of {len(rows)} risk rows): '
                     + '; '.join(nothing) + '. Where no threshold is certified the filter '
                     'keeps no pseudo-label rather than an uncertified one.')
    if within:
        lines.append(f'- **Within the target on the unlabeled images** ({len(within)} rows): '
                     + '; '.join(within) + '.')
    if above:
        lines.append(f'- **Above the target on the unlabeled images** ({len(above)} rows): '
                     + '; '.join(above) + '.')
    lines += _class_findings(rows, cal)
    paper = next((m for n, m in q['methods'].items() if m['kind'] == 'conformal'
                  and m['mode'] == 'pixel'), None)
    if paper is not None:
        lines.append(f"- The paper's filter (pixel mode, alpha {paper['alpha']:g}) keeps "
                     f"{pct(paper['kept_ratio'])}% at precision {pct(paper['precision'])}%"
                     ' (it controls the coverage of prediction sets, not the error of the kept '
                     f"labels); the annotator's argmax everywhere has precision "
                     f"{pct(q['methods']['raw']['precision'])}%.")
    lines.append(
        "- What this check is and is not: 'kept_error' bounds the expected per-image "
        "kept-and-wrong share, 'false_label_rate' the expected per-image error of the kept "
        'labels with probability >= 1 - delta over the labeled images drawn, both for images '
        'exchangeable with the labeled ones (in class mode per predicted class); the '
        'table pools the pixels of the unlabeled images of one split with one annotator, so it '
        'is an empirical check of the outcome, not a test of the guarantee.')
    return lines
