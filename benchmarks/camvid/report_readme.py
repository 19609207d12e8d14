"""The README's CamVid results: the headline table of docs/results/camvid.md (split 1/8) and the
verdicts' count, written between two marker lines so that the README never shows a number the
report does not."""
import report_effects
import report_training

START = '<!-- camvid-results: written by benchmarks/camvid/run.py; do not edit -->'
END = '<!-- camvid-results: end -->'


def section(s, training, split='1-8'):
    """The lines between the markers."""
    runs = report_training.by_key(training)
    planned = s.get('planned', len(training))
    lines = [f'**{len(training)} of {planned} runs finished** (split {report_training.frac(split)}'
             f", {s['protocol']['iters']} iterations; val mIoU, mean ± std over the seeds, "
             f'{report_training.MARK}: fewer than {report_training.MIN_SEEDS}; full report with '
             'the choices, label quality and cost: '
             '[docs/results/camvid.md](docs/results/camvid.md)).', '',
             '| method | val mIoU (seeds) | val vs supervised, same seed |', '|---|---|---|']
    for key in report_training.row_keys(s, runs, split):
        values = list(report_training.values(runs, key, split).values())
        if not values:
            continue
        diff = ('-' if key == ('supervised', None) else report_training.fmt_spread(
            list(report_training.paired(runs, key, ('supervised', None), split).values()),
            sign=True))
        lines.append(f'| {report_training.label(key)} | {report_training.fmt_spread(values)} | '
                     f'{diff} |')
    counts = {}
    for _, a, b, sign in report_effects.comparisons(report_training.row_keys(s, runs, split)):
        result, _ = report_effects.verdict(report_training.paired(runs, a, b, split),
                                            s['seeds'], sign)
        counts[result] = counts.get(result, 0) + 1
    if counts:
        lines += ['', 'Expected effects (seed by seed, beyond the spread): ' + ', '.join(
            f'{k}: {counts[k]}' for k in ('holds', 'does not hold', 'not measured yet')
            if k in counts) + '; each with its evidence in the report.']
    return lines


def update(path, s, training, split='1-8'):
    """Replace the lines between the markers of ``path``; an error names the markers to add."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if START not in text or END not in text:
        raise ValueError(f'{path} has no CamVid results markers: add the lines\n{START}\n{END}\n'
                         'where the table goes')
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    body = '\n'.join(section(s, training, split))
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'{head}{START}\n{body}\n{END}{tail}')
    return path
