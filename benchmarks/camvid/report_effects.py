"""The expected effects of docs/results/camvid.md (raw <= supervised, filtered > raw,
Stage II > Stage I, host + ConformalSAM > host > supervised, the risk filter's precision >= its
target) and whether each holds beyond the seed spread, with the evidence where one does not."""
import statistics

from report_training import (GROUPS, PAPER_ALPHA, by_key, fmt_spread, frac, groups, label,
                             mean_pct, paired, risk_method, risk_target, row_keys, selection,
                             threshold_text)

FILTERED = ('threshold_0.9', 'threshold_best', 'conformal_pixel', 'conformal_pixel_filtering',
            'conformal_class', 'risk')
# the quality.py method whose labels a row trains on (rows with a chosen value: _method)
METHOD = {'raw': 'raw', 'threshold_0.9': 'threshold 0.9',
          'conformal_pixel': f'conformal pixel, alpha {PAPER_ALPHA:g}',
          'conformal_class': f'conformal class, alpha {PAPER_ALPHA:g}',
          'conformalsam': f'conformal pixel, alpha {PAPER_ALPHA:g}',
          'unimatch_conformalsam': f'conformal pixel, alpha {PAPER_ALPHA:g}',
          'allspark_conformalsam': f'conformal pixel, alpha {PAPER_ALPHA:g}'}
RULE = ('An effect **holds** when every seed\'s difference (same seed, val mIoU) has the '
        'expected sign and the mean difference exceeds the standard deviation of the '
        'differences; it **does not hold** otherwise; it is **not measured yet** while a '
        'planned seed of either row has not finished.')


def verdict(diffs, seeds, sign):
    """('holds' | 'does not hold' | 'not measured yet', why) for the seed-by-seed differences
    ``diffs`` ({seed: difference}) of an effect expected with ``sign`` (+1: > 0, -1: < 0) over
    the planned ``seeds``."""
    missing = [s for s in seeds if s not in diffs]
    if missing:
        return 'not measured yet', f'{len(seeds) - len(missing)} of {len(seeds)} seeds'
    if len(seeds) < 2:
        return 'not measured yet', 'one seed gives no spread'
    d = [diffs[s] for s in seeds]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    against = [s for s in seeds if sign * diffs[s] <= 0]
    if against:
        return 'does not hold', ('seed ' + ', '.join(map(str, against))
                                 + (' has' if len(against) == 1 else ' have')
                                 + ' the other sign (or 0)')
    if sign * mean <= sd:
        return 'does not hold', f'|mean| {abs(mean):.2f} <= std {sd:.2f}'
    return 'holds', ''


def comparisons(keys):
    """(effect, row a, row b, sign): a - b is expected to have ``sign``; planned pairs only."""
    have = set(keys)
    out = []
    for g in GROUPS:
        out.append(('raw <= supervised', ('raw', g), ('supervised', None), -1))
    for g in GROUPS:
        out += [('filtered > raw', (row, g), ('raw', g), 1) for row in FILTERED]
    for g in GROUPS:
        out += [('Stage II > Stage I', ('conformalsam', g), ('conformal_pixel', g), 1),
                ('Stage II > Stage I', ('conformalsam_risk', g), ('risk', g), 1)]
    for g in GROUPS:
        out.append(('host + ConformalSAM > host', ('conformalsam', g), ('supervised', None), 1))
    for host in ('unimatch', 'allspark'):
        out += [('host + ConformalSAM > host', (f'{host}_conformalsam', g), (host, None), 1)
                for g in GROUPS]
        out += [('host > supervised', (host, None), ('supervised', None), 1),
                ('host > supervised', (host, None), ('supervised_hosts_recipe', None), 1)]
    return [c for c in out if c[1] in have and c[2] in have]


def effect_rows(s, training, split, quality):
    """The effects table of one split and the evidence of those that do not hold."""
    runs = by_key(training)
    lines = ['| expected | a - b | difference by seed | mean ± std | verdict |',
             '|---|---|---|---|---|']
    evidence = []
    for effect, a, b, sign in comparisons(row_keys(s, runs, split)):
        diffs = paired(runs, a, b, split)
        result, why = verdict(diffs, s['seeds'], sign)
        by_seed = ', '.join(f'{d:+.1f} (seed {seed})' for seed, d in diffs.items()) or '-'
        lines.append(f'| {effect} | {label(a)} - {label(b)} | {by_seed} | '
                     f'{fmt_spread(list(diffs.values()), sign=True, n=False)} | '
                     f'{result}{f" ({why})" if why else ""} |')
        if result == 'does not hold':
            evidence.append(_evidence(s, runs, split, quality, effect, a, b))
    return lines, evidence


def _evidence(s, runs, split, quality, effect, a, b):
    sel = paired(runs, a, b, split, selection)
    parts = [f'on the selection set the same difference is '
             f'{fmt_spread(list(sel.values()), sign=True, n=False)}']
    for key in (a, b):
        parts += _label_evidence(s, runs, split, quality, key)
    return f'- {effect}, {label(a)} - {label(b)}: ' + '; '.join(parts) + '.'


def _method(s, key, split):
    row, group = key
    if row == 'threshold_best':
        tau = (s.get('tau_choices') or {}).get(split)
        return None if tau is None else f'threshold {tau:g}'
    if row in ('risk', 'conformalsam_risk'):
        return risk_method(risk_target(s, group, split))
    if row == 'conformal_pixel_filtering':
        alpha = (((s.get('alpha_choices') or {}).get(split) or {}).get(group) or {}).get('alpha')
        return None if alpha is None else f'conformal pixel, alpha {alpha:g}'
    return METHOD.get(row)


def _label_evidence(s, runs, split, quality, key):
    """The label quality of a row's filter on the unlabeled images and what its runs' calibration
    kept, where the results have them."""
    row, group = key
    if group is None:
        return []
    out = []
    q = (quality or {}).get(f'cross_sequence_{group}') or {}
    m = q.get('methods', {}).get(_method(s, key, split))
    if m is not None:
        out.append(f"{label(key)}: its labels ({_method(s, key, split)}) keep "
                   f"{100 * m['kept_ratio']:.1f}% of the unlabeled pixels of split "
                   f"{frac(s.get('quality_split', split))} at precision "
                   f"{100 * m['precision']:.1f}%" + _mix_text(m))
    cals = [r['calibration'] for r in runs.get(key + (split, ), {}).values()
            if r.get('calibration')]
    kept = [c['conformal_kept_ratio'] for c in cals if 'conformal_kept_ratio' in c]
    if kept:
        out.append(f"{label(key)}: its runs' calibration logged {threshold_text(cals[0])}, "
                   f'kept {mean_pct(kept)}%')
    return out


def _mix_text(m, least=0.05):
    """', of which 65% road, 32% sky': the classes of the kept labels with a share >= least."""
    share = m.get('per_class_share')
    if not share or not m['kept_ratio']:
        return ''
    big = sorted(((v, c) for c, v in share.items() if v >= least), reverse=True)
    return ', of which ' + ', '.join(f'{100 * v:.0f}% {c}' for v, c in big)


def risk_rows(risk_quality, s):
    """The risk filter's precision on the unlabeled images against 1 - target, per group."""
    lines = ['| annotator | target | kept % | actual precision % | 1 - target % | verdict |',
             '|---|---|---|---|---|---|']
    for group in groups(s):
        target = risk_target(s, group)
        method = risk_method(target)
        q = risk_quality.get(group)
        m = (q or {}).get('methods', {}).get(method)
        if m is None:
            lines.append(f'| {group} | {target:g} | - | - | {100 * (1 - target):g} | '
                         'not measured yet |')
            continue
        if not m['kept_ratio']:
            pooled = q['risk_calibration'][method]['groups'][0]
            result = (f"not measurable: keeps no unlabeled pixel (calibration: {pooled['source']}"
                      f", {pooled['n']} labeled images, {pooled['n_needed']} needed)")
            precision = '-'
        else:
            result = 'holds' if m['precision'] >= 1 - target else 'does not hold'
            if result == 'does not hold':
                result += f' ({_risk_calibration_text(q, method)})'
            precision = f"{100 * m['precision']:.1f}"
        lines.append(f"| {group} | {target:g} | {100 * m['kept_ratio']:.1f} | {precision} | "
                     f'{100 * (1 - target):g} | {result} |')
    return lines


def _risk_calibration_text(q, method):
    """What the calibration on the labeled images certified, from the quality results."""
    pooled = ((q.get('risk_calibration') or {}).get(method) or {}).get('groups', [{}])[0]
    if pooled.get('threshold') is None:
        return 'no calibration recorded'
    lo, hi = pooled['risk_interval']
    return (f"labeled images: t = {pooled['threshold']:.3f} certified on {pooled['n']} images, "
            f"estimated false-label rate {100 * pooled['risk']:.2f}% "
            f'[{100 * lo:.2f}, {100 * hi:.2f}]')


def effects_section(s, training, quality, risk_quality):
    lines = ['## Expected effects', '', RULE + ' Differences are in val mIoU points, row a '
             'minus row b. Where an effect does not hold, the evidence in the results is '
             'listed under the table: the same difference on the selection set, the quality '
             'of the rows\' labels on the unlabeled images (Pseudo-label quality below) and '
             'what the runs\' calibration logged.', '']
    for split in s['splits']:
        table, evidence = effect_rows(s, training, split, quality)
        lines += [f'### Split {frac(split)}', ''] + table + ['']
        if evidence:
            lines += ['Evidence where an effect does not hold:', ''] + evidence + ['']
    lines += ["### The risk filter's actual precision >= 1 - target (false-label rate, pixel "
              'mode, target* per annotator)', '',
              'The filter of the risk rows, calibrated on the labeled images of split '
              f"{frac(s.get('quality_split', '1-8'))}, applied to its unlabeled images and "
              'measured on their ground truth: it holds when the precision of the kept labels '
              'is at least 1 - target (one measurement per annotator, no seed).', '']
    return '\n'.join(lines + risk_rows(risk_quality, s))
