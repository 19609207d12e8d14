"""docs/results/camvid.md and its PNGs, from the benchmark's results.json."""
import json
import math
import os
import os.path as osp
import statistics
import sys

from training import REPO, ROWS

NAMES = {
    'cross_sequence': 'cross-sequence annotator (real model, trained on Seq05VD)',
    'simulated_gap0.25': 'SimulatedAnnotator, gap 0.25',
    'simulated_gap0.5': 'SimulatedAnnotator, gap 0.5',
    'simulated_gap0.75': 'SimulatedAnnotator, gap 0.75',
}
HOSTS = (('SelfReliance', 'supervised', 'conformalsam'), ('UniMatch', 'unimatch',
         'unimatch_conformalsam'), ('AllSpark', 'allspark', 'allspark_conformalsam'))


def write(work_root, out_dir, quality_stems):
    with open(osp.join(work_root, 'results.json')) as f:
        results = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    s = results['summary']
    parts = [_header(s)]
    if results['training']:
        plot_miou(results['training'], s['splits'], osp.join(out_dir, 'camvid_miou.png'))
        parts.append(_training_section(results['training'], s))
    if results['quality']:
        plot_curves(results['quality'], osp.join(out_dir, 'camvid_precision_vs_kept.png'))
        example = osp.join(out_dir, 'camvid_pseudo_labels.png')
        plot_examples(results['quality']['cross_sequence'], quality_stems, example)
        parts.append(_quality_section(results['quality'], s))
    parts.append(_cost_section(results, s))
    path = osp.join(out_dir, 'camvid.md')
    with open(path, 'w') as f:
        f.write('\n\n'.join(parts) + '\n')
    return path


# --- text -------------------------------------------------------------------------------------
def _header(s):
    p = s['protocol']
    return f"""# CamVid: semi-supervised results, pseudo-label quality, cost

Made by `benchmarks/camvid/run.py` (one command; see its docstring; a rerun reuses finished
rows). Every number below comes from the same machine: {s['threads']} CPU threads, no GPU. CamVid, 11 classes, from
../shared/data/camvid; labeled splits {', '.join(_frac(sp) for sp in s['splits'])} of train (367 images; seeded by
`tools/make_splits.py random --seed 0`), the unlabeled images are the rest of train; evaluation on
val (101 images of sequence 0016E5) at half resolution (240 x 180), mIoU in %.

Protocol, the same for every row: DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0, 160 px
crops of the half-resolution images, 4 labeled images per iteration (plus 4 unlabeled; UniMatch
also 4 CutMix-source images), SGD lr {p['lr']:g} (head x10), poly decay, {p['iters']} iterations,
seeds {', '.join(map(str, s['seeds']))}. The annotator is the cross-sequence CamVid annotator
(`tools/train_camvid_annotator.py`: DeepLabV3+ EfficientNet-Lite0 trained on the Seq05VD frames
of CamVid test only, its probabilities on CamVid train cached as top-3). ConformalSAM: alpha 0.05,
the paper's pixel mode and foreground-first rule (CamVid has no background class, so the rule
keeps the most probable class of the set), Stage II (self-reliance) from 75% of the iterations.
This is a CPU-sized schedule ({p['iters']} iterations): the numbers compare the rows with each
other, they are not converged CamVid results."""


def _frac(split):
    return split.replace('-', '/')


def _mean_std(values):
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def _by_row_split(training):
    table = {}
    for r in training:
        table.setdefault((r['row'], r['split']), []).append(r['mIoU'])
    return table


def _training_section(training, s):
    table = _by_row_split(training)
    splits = [sp for sp in s['splits'] if any(k[1] == sp for k in table)]
    lines = ['## Semi-supervised results (val mIoU, %)', '',
             '| method | ' + ' | '.join(_frac(sp) for sp in splits) + ' |',
             '|---|' + '---|' * len(splits)]
    for row in ROWS:
        if any((row.name, sp) in table for sp in splits):
            lines.append(f'| {row.label} | ' + ' | '.join(
                _mean_std(table.get((row.name, sp), [])) for sp in splits) + ' |')
    base = [statistics.mean(table[('supervised', sp)]) for sp in splits
            if ('supervised', sp) in table]
    if len(base) == len(splits):
        lines += ['', 'Change against "Supervised only", in mIoU points (mean over the splits):',
                  '', '| method | ' + ' | '.join(_frac(sp) for sp in splits) + ' | mean |',
                  '|---|' + '---|' * (len(splits) + 1)]
        for row in ROWS[1:]:
            if all((row.name, sp) in table for sp in splits):
                d = [statistics.mean(table[(row.name, sp)]) - b for sp, b in zip(splits, base)]
                lines.append(f'| {row.label} | ' + ' | '.join(f'{x:+.1f}' for x in d)
                             + f' | {statistics.mean(d):+.1f} |')
    n = max(len(v) for v in table.values())
    lines += ['', f'{"Mean ± std over " + str(n) + " seeds." if n > 1 else "One seed."} '
              'Rows 2-6 train on the labeled images plus the annotator\'s labels of the '
              'unlabeled images (Stage I only), filtered as the row says; "ConformalSAM" adds '
              'Stage II, where the model labels the unlabeled images itself.',
              '', '![val mIoU per method and split](camvid_miou.png)']
    calib = [r for r in training if r.get('calibration') and r['row'] == 'conformal_pixel']
    if calib:
        lines += ['', 'Calibration on the labeled images (pixel mode, alpha 0.05): '
                  + '; '.join(f"split {_frac(r['split'])}: q = "
                              f"{_pixel_q(r['calibration']):.3f}, "
                              f"kept {100 * r['calibration']['conformal_kept_ratio']:.1f}%, "
                              f"held-out coverage "
                              f"{100 * r['calibration'].get('conformal_holdout_coverage', math.nan):.1f}%"
                              for r in calib) + '.']
    return '\n'.join(lines)


def _pixel_q(calibration):
    """The pixel-mode q: one scalar (``conformal_q``), or per class in older logs."""
    return calibration.get('conformal_q', calibration.get('conformal_q/sky', float('nan')))


def _pct(x):
    return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{100 * x:.1f}'


def _quality_table(q):
    lines = ['| labels | kept % | precision % | mIoU % |', '|---|---|---|---|']
    for name, m in q['methods'].items():
        lines.append(f"| {name} | {_pct(m['kept_ratio'])} | {_pct(m['precision'])} | "
                     f"{_pct(m['mIoU'])} |")
    return lines


def _per_class_table(q, methods):
    classes = list(q['methods']['raw']['per_class_precision'])
    lines = ['| labels | ' + ' | '.join(classes) + ' |', '|---|' + '---|' * len(classes)]
    for name in methods:
        m = q['methods'][name]
        lines.append(f'| {name} | ' + ' | '.join(_pct(m['per_class_precision'][c])
                                                  for c in classes) + ' |')
    return lines


def _quality_section(quality, s):
    main = quality['cross_sequence']
    lines = [f"## Pseudo-label quality (unlabeled images of split "
             f"{_frac(s['quality_split'])}: {main['unlabeled']} images, calibrated "
             f"on its {main['labeled']} labeled images)", '',
             'Against the ground truth of the unlabeled images: kept = labeled (not rejected) '
             'pixels / all pixels; precision = correct / kept pixels with a ground-truth label; '
             'mIoU = IoU of the kept labels, on kept pixels only. "threshold t" keeps the '
             "annotator's argmax where its probability is >= t; \"conformal\" is the "
             'prediction-set filter calibrated at alpha on the labeled images.', '',
             f"### {NAMES['cross_sequence']}", ''] + _quality_table(main)
    lines += ['', 'Per-class precision (%), by the class the labels assign:', '']
    lines += _per_class_table(main, ['raw', 'threshold 0.9', 'conformal pixel, alpha 0.2',
                                     'conformal class, alpha 0.2'])
    classes = list(main['methods']['raw']['per_class_precision'])
    lines += ['', 'Thresholds q (pixel mode: one for all classes; class mode: one per class):',
              '', '| calibration | ' + ' | '.join(classes) + ' |',
              '|---|' + '---|' * len(classes)]
    lines += [f'| {n} | ' + ' | '.join(f'{v:.3f}' for v in q) + ' |'
              for n, q in main['thresholds'].items()
              if not n.startswith('curve') and ', alpha' in n]
    for name in quality:
        if name != 'cross_sequence':
            lines += ['', f'### {NAMES.get(name, name)}', ''] + _quality_table(quality[name])
    lines += ['', 'The risk-controlled filter (thresholds chosen on the labeled images so that the '
              'error of the kept labels is at most a target, with the actual precision on these '
              'unlabeled images): [camvid_risk.md](camvid_risk.md).']
    lines += ['', '![precision vs kept ratio](camvid_precision_vs_kept.png)', '',
              '![filtered pseudo-labels](camvid_pseudo_labels.png)']
    return '\n'.join(lines)


def _cost_section(results, s):
    training, cache = results['training'], s['cache']
    lines = ['## Cost', '']
    rows = {}
    for r in training:
        rows.setdefault(r['row'], []).append(r)

    def spi(name, key='all'):
        v = [r['seconds_per_iter'][key] for r in rows.get(name, [])
             if r['seconds_per_iter'].get(key)]
        return statistics.mean(v) if v else None

    if training:
        lines += ['Seconds per training iteration (mean over the logged windows of all its '
                  'runs, first window excluded), measured in this one invocation. ConformalSAM '
                  'runs Stage I (the calibrated annotator labels) for 75% of the iterations and '
                  'the host method in Stage II:', '',
                  '| host | host alone | + ConformalSAM, Stage I | + ConformalSAM, Stage II | '
                  'ratio, whole run |', '|---|---|---|---|---|']
        for host, alone, plus in HOSTS:
            a, whole = spi(alone), spi(plus)
            if a is None or whole is None:
                continue
            label = ('Supervised (labeled only) -> ConformalSAM alone' if host == 'SelfReliance'
                     else host)
            lines.append(f'| {label} | {a:.3f} | {_f(spi(plus, "stage1"))} | '
                         f'{_f(spi(plus, "stage2"))} | {whole / a:.2f}x |')
        total = sum(r['wall_seconds'] for r in training)
        quality = sum(q.get('seconds', 0) for q in (results['quality'] or {}).values())
        lines += ['', f'Training runs: {len(training)}, {total / 60:.1f} min of wall time in all '
                  '(start-up and evaluation included); pseudo-label quality '
                  f'{quality / 60:.1f} min; the benchmark for one seed: '
                  f'{(total + quality) / 60:.0f} min, plus the annotator when it has to be '
                  'made first (tools/train_camvid_annotator.py, 13.5 min here, '
                  '[annotators.md](../annotators.md)).']
    q = results['quality'].get('cross_sequence') if results['quality'] else None
    if q:
        lines += ['', f"Calibration on the {q['labeled']} labeled images of split "
                  f"{_frac(s['quality_split'])} (read the cache, rebuild the dense "
                  f"probabilities, update {len([n for n in q['thresholds']])} histogram "
                  f"calibrators): {q['calibration_seconds']:.1f} s."]
    lines += ['', f"Annotator cache on disk: {cache['bytes'] / 2**20:.0f} MiB for "
              f"{cache['entries']} images ({cache['bytes'] / max(cache['entries'], 1) / 2**20:.2f}"
              f" MiB per 480 x 360 image: top-{cache.get('topk')} classes and their uint8 "
              f"probabilities, codec '{cache.get('codec')}').",
              'Against this, the annotator costs nothing at training time: it runs once, before '
              'training, and Stage I reads its cache.']
    if s.get('annotator_seconds'):
        lines.append(f"Training and caching the annotator took {s['annotator_seconds'] / 60:.1f} "
                     'min in this invocation.')
    return '\n'.join(lines)


def _f(x):
    return '-' if x is None else f'{x:.3f}'


# --- pictures -----------------------------------------------------------------------------
def plot_miou(training, splits, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    table = _by_row_split(training)
    rows = [r for r in ROWS if any((r.name, sp) in table for sp in splits)]
    splits = [sp for sp in splits if any(k[1] == sp for k in table)]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / max(len(splits), 1)
    for j, sp in enumerate(splits):
        means = [statistics.mean(table[(r.name, sp)]) if (r.name, sp) in table else 0
                 for r in rows]
        errs = [statistics.stdev(table[(r.name, sp)]) if len(table.get((r.name, sp), [])) > 1
                else 0 for r in rows]
        ax.bar([i + (j - (len(splits) - 1) / 2) * width for i in range(len(rows))], means,
               width, yerr=errs, label=f'{sp.replace("-", "/")} labeled')
        for i, m in enumerate(means):
            ax.annotate(f'{m:.1f}', (i + (j - (len(splits) - 1) / 2) * width, m),
                        ha='center', va='bottom', fontsize=6, xytext=(0, 1),
                        textcoords='offset points')
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r.short for r in rows], fontsize=8)
    ax.set_ylabel('val mIoU (%)')
    ax.set_title('CamVid, same network and schedule for every method')
    ax.grid(axis='y', alpha=0.3)
    ax.set_ylim(0, 1.18 * max(max(v) for v in table.values()))
    ax.legend(fontsize=8, ncol=len(splits), loc='upper center')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(quality, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(quality)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        q = quality[name]
        c = q['curve']
        ax.plot([100 * x for x in c['kept_ratio']], [100 * x for x in c['precision']],
                color='0.4', lw=1.2, label='confidence threshold (all t)')
        for t in (0.5, 0.9):
            m = q['methods'].get(f'threshold {t:g}')
            if m:
                ax.plot(100 * m['kept_ratio'], 100 * m['precision'], 's', color='0.2', ms=5)
                ax.annotate(f't={t:g}', (100 * m['kept_ratio'], 100 * m['precision']),
                            fontsize=7, xytext=(3, -9), textcoords='offset points')
        for key, colour, label in (('pixel_points', 'tab:blue', 'conformal, pixel mode'),
                                   ('class_curve', 'tab:orange', 'conformal, class mode')):
            pts = sorted((float(a), v) for a, v in q[key].items())
            ax.plot([100 * v[0] for _, v in pts], [100 * v[1] for _, v in pts], 'o-',
                    color=colour, ms=4, lw=0.8, label=label)
            for a, v in pts:
                if a in ((0.2, ) if key == 'pixel_points' else (0.05, 0.5)):
                    ax.annotate(f'α={a:g}', (100 * v[0], 100 * v[1]), fontsize=7,
                                color=colour, xytext=(3, 3), textcoords='offset points')
        raw = q['methods']['raw']
        ax.plot(100 * raw['kept_ratio'], 100 * raw['precision'], '*', color='tab:red', ms=9,
                label='raw argmax')
        ax.set_title(NAMES.get(name, name).split(' (')[0], fontsize=9)
        ax.set_xlabel('kept pixels (%)')
        ax.set_ylabel('precision (%)')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc='lower left')
    fig.suptitle('Pseudo-labels of the unlabeled images: precision vs kept ratio', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(q, stems, path, num=2, alpha=0.2, mode='pixel'):
    """image | annotator | conformally filtered | ground truth, for the first unlabeled
    images of the quality split (cross-sequence annotator)."""
    import cv2
    import numpy as np
    import torch
    sys.path.insert(0, osp.join(REPO, 'tools'))
    from visualize_pseudo_labels import grid

    from conformalsam_mmseg.annotators.cache import AnnotatorCache
    from conformalsam_mmseg.conformal import filter_pseudo_labels
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    from quality import cache_source
    meta = CamVidDataset.METAINFO
    classes, palette = meta['classes'], meta['palette']
    name = f'conformal {mode}, alpha {alpha:g}'
    thresholds = torch.tensor(q['thresholds'][name], dtype=torch.float64)
    images = osp.join(REPO, 'data', 'camvid', 'images', 'train')
    source = cache_source(
        AnnotatorCache(osp.join(REPO, 'data', 'annotator_cache', 'camvid_cross_sequence'),
                       num_classes=len(classes), class_names=classes),
        images, osp.join(REPO, 'data', 'camvid', 'labels', 'train'), len(classes))
    panels = []
    for stem in stems[1][:: max(1, len(stems[1]) // num)][:num]:
        probs, gt = source(stem)
        filtered = filter_pseudo_labels(probs.unsqueeze(0), thresholds, background_index=None,
                                        dtype=torch.long)[0].numpy()
        panels.append(grid(cv2.imread(osp.join(images, stem + '.jpg')),
                           probs.argmax(0).numpy(), filtered, gt.numpy(), palette, classes,
                           scale=0.5, caption=f'{stem}: {name} (q = {thresholds[0]:.3f}); '
                           'hatched = rejected'))
    width = max(p.shape[1] for p in panels)
    panels = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
              for p in panels]
    cv2.imwrite(path, np.concatenate(panels, axis=0)[..., ::-1])


# --- the risk-controlled filter ---------------------------------------------------------------
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
        f"# CamVid: risk-controlled pseudo-labels (split {_frac(split)}: calibrated on its "
        f"{q['labeled']} labeled images, measured on its {q['unlabeled']} unlabeled images)", '',
        'Made by `benchmarks/camvid/run.py --risk-only` (no training) with the cross-sequence '
        'annotator (`tools/train_camvid_annotator.py`: trained on Seq05VD only, its top-3 '
        'probabilities on CamVid train). "risk R mode, target x" keeps the annotator\'s argmax '
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
        precision = _pct(m['precision']) if m['kept_ratio'] else '- (none kept)'
        lines.append(f"| {name} | {t} | {_pct(m['kept_ratio'])} | {precision} | "
                     f"{_pct(m.get('kept_wrong'))} | {outcome} |")
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
                cells.append(f"{t}{mark}: {_pct(m['per_class_precision'][g['name']])}")
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
                           f"{_pct(precision)}%; on the labeled images t keeps "
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
        text = (f"{name}: keeps {_pct(m['kept_ratio'])}% of the unlabeled pixels, "
                f"{what} {100 * error:.2f}% (target {100 * m['target']:g}%), precision "
                f"{_pct(m['precision'])}%")
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
                     f"{_pct(paper['kept_ratio'])}% at precision {_pct(paper['precision'])}%"
                     ' (it controls the coverage of prediction sets, not the error of the kept '
                     f"labels); the annotator's argmax everywhere has precision "
                     f"{_pct(q['methods']['raw']['precision'])}%.")
    lines.append(
        "- What this check is and is not: 'kept_error' bounds the expected per-image "
        "kept-and-wrong share, 'false_label_rate' the expected per-image error of the kept "
        'labels with probability >= 1 - delta over the labeled images drawn, both for images '
        'exchangeable with the labeled ones (in class mode per predicted class); the '
        'table pools the pixels of the unlabeled images of one split with one annotator, so it '
        'is an empirical check of the outcome, not a test of the guarantee.')
    return lines
