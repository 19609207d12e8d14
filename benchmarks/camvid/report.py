"""docs/results/camvid.md and its PNGs, from the benchmark's results.json: the header, the
annotators, the training parts (report_training.py), pseudo-label quality, cost, pictures.
docs/results/camvid_risk.md (run.py --risk-only) is report_risk.py's."""
import json
import math
import os
import os.path as osp
import sys

import report_annotators
import report_effects
import report_training
from report_training import frac
from training import REPO

NAMES = {
    'cross_sequence_strong': 'strong annotator (cross-sequence: trained on Seq05VD only; full '
                             'resolution, flips)',
    'cross_sequence_weak': 'weak annotator (cross-sequence: trained on Seq05VD only; half '
                           'resolution, 500 iterations)',
    'simulated_gap0.25': 'SimulatedAnnotator, gap 0.25',
    'simulated_gap0.5': 'SimulatedAnnotator, gap 0.5',
    'simulated_gap0.75': 'SimulatedAnnotator, gap 0.75',
}
GROUP_TEXT = {
    'strong': 'the cross-sequence annotator at full resolution with flips, the paper\'s regime '
              '(strong but domain-shifted); every annotator row runs with it',
    'weak': 'the same network at half resolution, 500 iterations (the first benchmark\'s '
            'annotator); the Stage I rows (t* excepted) and ConformalSAM alone run with it',
}


def write(work_root, out_dir, quality_stems):
    with open(osp.join(work_root, 'results.json')) as f:
        results = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    s, training, quality = results['summary'], results['training'], results['quality'] or {}
    caches = {g: osp.join(REPO, c) for g, c in s['protocol'].get('annotators', {}).items()}
    parts = [_header(s, training, work_root), report_annotators.section(caches, out_dir)]
    if training:
        report_training.plot_miou(s, training, osp.join(out_dir, 'camvid_miou.png'))
        parts.append(report_training.training_section(s, training))
        parts.append(predictions_section(s, training, work_root, out_dir))
    parts.append(report_effects.effects_section(s, training, quality,
                                                 risk_quality(work_root, s, quality)))
    if quality:
        plot_curves(quality, osp.join(out_dir, 'camvid_precision_vs_kept.png'), s)
        parts.append(_quality_section(quality, s))
        strong = quality.get('cross_sequence_strong')
        if strong and osp.isdir(caches.get('strong', '')):
            plot_examples(strong, quality_stems, osp.join(out_dir, 'camvid_pseudo_labels.png'),
                          caches['strong'])
            parts.append('![filtered pseudo-labels, strong annotator](camvid_pseudo_labels.png)')
    parts.append(report_training.cost_section(s, training, quality))
    path = osp.join(out_dir, 'camvid.md')
    with open(path, 'w') as f:
        f.write('\n\n'.join(p for p in parts if p) + '\n')
    return path


# the rows whose predictions the picture shows (the strong annotator's, where a row reads one)
PICTURE_ROWS = ('supervised', 'raw', 'conformal_pixel', 'risk', 'conformalsam',
                'conformalsam_risk', 'unimatch', 'unimatch_conformalsam', 'allspark',
                'allspark_conformalsam')


def predictions_section(s, training, work_root, out_dir, split='1-8'):
    """What the networks of one seed predict on two val frames (camvid_predictions.png)."""
    import report_predictions
    import training as training_rows
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    done = {(r['row'], r.get('group'), r['seed']) for r in training if r['split'] == split}
    if not done:
        return ''
    seed = min(k[2] for k in done)
    runs, lost = [], []
    for name in PICTURE_ROWS:
        row = report_training.ROW[name]
        group = 'strong' if row.conformalsam else None
        if (name, group, seed) in done:
            wd = training_rows.run_dir(work_root, row, split, seed, group)
            (runs if report_predictions.can_predict(wd) else lost).append((row, wd))
    text = [f'### What the networks predict (seed {seed}, split {frac(split)})', '']
    if runs:
        stems = report_predictions.val_stems()
        columns = [(row.short, report_predictions.predictions(wd, row.config, stems))
                   for row, wd in runs]
        meta = CamVidDataset.METAINFO
        report_predictions.plot(columns, stems, osp.join(out_dir, 'camvid_predictions.png'),
                                meta['classes'], meta['palette'])
        text += ['Two val frames (0016E5), their ground truth and the prediction of each '
                 f'finished method\'s seed-{seed} network at its last iteration (the strong '
                 'annotator\'s rows; `mmseg.apis.inference_model` on the run\'s checkpoint and '
                 'config).', '', '![predictions on val](camvid_predictions.png)']
    if lost:
        text += ['', 'Not pictured (neither a checkpoint nor kept predictions in the work dir): '
                 + ', '.join(f'{row.label} (`{osp.relpath(wd, work_root)}`)' for row, wd in lost)
                 + '.']
    return '\n'.join(text)


def risk_quality(work_root, s, quality):
    """{group: quality results with the risk rows' filter}: the quality entry of the annotator,
    else (strong) run.py --risk-only's file, where either has the method."""
    out = {}
    for group in report_training.groups(s):
        method = report_training.risk_method(report_training.risk_target(s, group))
        q = quality.get(f'cross_sequence_{group}')
        path = osp.join(work_root, f"risk_quality_{s.get('quality_split', '1-8')}_"
                                   f'cross_sequence_{group}.json')
        if (not q or method not in q['methods']) and osp.exists(path):
            with open(path) as f:
                q = json.load(f)
        if q and method in q['methods']:
            out[group] = q
    return out


# --- text -------------------------------------------------------------------------------------
def _header(s, training, work_root):
    p = s['protocol']
    done, planned = len(training), s.get('planned', len(training))
    annotators = '\n'.join(f"- **{g}**: {GROUP_TEXT.get(g, '')} (`{c}`)."
                           for g, c in p.get('annotators', {}).items())
    return f"""# CamVid: semi-supervised results, pseudo-label quality, cost

Made by `benchmarks/camvid/run.py` (see its docstring), which runs in several sittings and
rewrites this page from the runs finished so far (each kept, with its logs, under
[logs/camvid/](logs/camvid/), from where a fresh clone reads it instead of training it
again). Every number comes from CPU training ({s['threads']} threads), no GPU; the machines
the runs were made on are listed under Cost. The
same runs at full resolution on a GPU: camvid_full_resolution.md
(`benchmarks/camvid/full_resolution.py`).

{_progress(done, planned)}{_later_splits(s)}

Data: CamVid, 11 classes, half resolution (240 x 180); labeled splits
{', '.join(frac(sp) for sp in s['splits'])} of train (367 images; `tools/make_splits.py random
--seed 0`), the unlabeled images are the rest of train. Two evaluation sets: the **selection
set** (the 62 0001TP frames of CamVid test) is what every choice reads (the length, t*), and
**val** (the 101 0016E5 frames) gives the final numbers and no choice; alpha* reads the labeled
images only. mIoU in %.

Protocol, the same for every row: DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0 (BN
momentum 0.1), 160 px crops, 4 labeled images per iteration (plus 4 unlabeled; UniMatch also 4
CutMix-source images), poly decay, {p['iters']} iterations
({_length_source(work_root, p['iters'])}), seeds {', '.join(map(str, s['seeds']))}. Optimizer:
SGD lr {p['lr']:g} (head x10) for the supervised and ConformalSAM-alone rows; the UniMatch and
AllSpark rows (with or without ConformalSAM) take their authors' street-scene (Cityscapes) recipe,
the closest to CamVid: lr 0.005 at one rate for every parameter, the OHEM labeled loss, and
UniMatch's threshold 0 (docs/semi_supervised.md); the supervised row of that recipe (same
network and labeled images) tells what the hosts' unlabeled images add under it. ConformalSAM:
the paper's pixel mode and foreground-first rule (CamVid has no background class, so the rule
keeps the most probable class of the set), alpha 0.05 unless the row says otherwise, Stage II
(self-reliance) from 75% of the iterations.

Two annotators (`tools/train_camvid_annotator.py`, DeepLabV3+ EfficientNet-Lite0 trained on the
Seq05VD frames of CamVid test only, their probabilities on CamVid train cached); a row that reads
one names it:

{annotators}"""


def _progress(done, planned):
    return (f'**{done} of {planned} runs finished; rows with fewer than '
            f'{report_training.MIN_SEEDS} seeds are marked {report_training.MARK}.**')


def _later_splits(s):
    """What the page does not show yet: 1/16 follows 1/8 once its 3 seeds are finished."""
    if '1-16' in s['splits']:
        return ''
    return (' Split 1/16 is not in this page: 1/8 comes first, with 3 seeds for every row; '
            '`run.py --splits 1-8 1-16` adds 1/16 to the plan, with the seeds the budget allows '
            '(`--seeds`).')


def _length_source(work_root, iters):
    path = osp.join(work_root, 'convergence', 'length.json')
    if osp.exists(path):
        with open(path) as f:
            if int(json.load(f)['length']) == iters:
                return ('the length the supervised convergence study chose on the selection '
                        'set: [camvid_convergence.md](camvid_convergence.md)')
    return ('set with --iters; the supervised convergence study: '
            '[camvid_convergence.md](camvid_convergence.md)')



def pct(x):
    return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{100 * x:.1f}'


def _quality_table(q):
    lines = ['| labels | kept % | precision % | mIoU % |', '|---|---|---|---|']
    for name, m in q['methods'].items():
        lines.append(f"| {name} | {pct(m['kept_ratio'])} | {pct(m['precision'])} | "
                     f"{pct(m['mIoU'])} |")
    return lines


def _per_class_table(q, methods, field='per_class_precision', first=()):
    """One row per method of its per-class ``field``; ``first``: (name, {class: value}) rows
    above them."""
    classes = list(q['methods']['raw'][field])
    rows = list(first) + [(name, q['methods'][name][field]) for name in methods]
    return (['| labels | ' + ' | '.join(classes) + ' |', '|---|' + '---|' * len(classes)]
            + [f'| {name} | ' + ' | '.join(pct(v[c]) for c in classes) + ' |'
               for name, v in rows])


def _thresholds_table(q):
    classes = list(q['methods']['raw']['per_class_precision'])
    lines = ['Thresholds q (pixel mode: one for all classes; class mode: one per class):', '',
             '| calibration | ' + ' | '.join(classes) + ' |', '|---|' + '---|' * len(classes)]
    return lines + [f'| {n} | ' + ' | '.join(f'{v:.3f}' for v in values) + ' |'
                    for n, values in q['thresholds'].items()
                    if n.startswith('conformal') and ', alpha' in n]


def _share_table(q, methods):
    """What the kept labels are: each class's share of them, after the ground truth's mix."""
    raw = q['methods']['raw']
    if 'per_class_share' not in raw:
        return []
    return (['What the kept labels are (% of each method\'s kept labels, by the class they '
             'assign; first row: the ground truth of the unlabeled images):', '']
            + _per_class_table(q, methods, 'per_class_share',
                               first=[('ground truth', raw['truth_share'])]) + [''])


def _annotator_quality(name, q, risk):
    """The tables of one real annotator: every method, per-class precision and the class mix
    of the kept labels (``risk``: the risk rows' filter), thresholds."""
    per_class = [m for m in ('raw', 'threshold 0.9', 'conformal pixel, alpha 0.05',
                             'conformal pixel, alpha 0.2', 'conformal class, alpha 0.05',
                             risk) if m in q['methods']]
    return ([f'### {NAMES.get(name, name)}', ''] + _quality_table(q)
            + ['', 'Per-class precision (%), by the class the labels assign:', '']
            + _per_class_table(q, per_class) + [''] + _share_table(q, per_class)
            + _thresholds_table(q) + [''])


def _quality_section(quality, s):
    real = [n for n in quality if n.startswith('cross_sequence')]
    first = quality[real[0]] if real else next(iter(quality.values()))
    lines = [f"## Pseudo-label quality (unlabeled images of split "
             f"{frac(s['quality_split'])}: {first['unlabeled']} images, calibrated "
             f"on its {first['labeled']} labeled images)", '',
             'Against the ground truth of the unlabeled images: kept = labeled (not rejected) '
             'pixels / all pixels; precision = correct / kept pixels with a ground-truth label; '
             'mIoU = IoU of the kept labels, on kept pixels only. "threshold t" keeps the '
             "annotator's argmax where its probability is >= t; \"conformal\" is the "
             'prediction-set filter calibrated at alpha on the labeled images; "risk" keeps the '
             'argmax where its probability is >= t, t chosen on the labeled images so that the '
             'error of the kept labels is at most the target.', '']
    for name in real:
        target = report_training.risk_target(s, name[len('cross_sequence_'):])
        lines += _annotator_quality(name, quality[name], report_training.risk_method(target))
    for name in quality:
        if name not in real:
            lines += [f'### {NAMES.get(name, name)}', ''] + _quality_table(quality[name]) + ['']
    lines += ['The risk-controlled filter at several targets, with its calibration: '
              '[camvid_risk.md](camvid_risk.md).', '',
              '![precision vs kept ratio](camvid_precision_vs_kept.png)']
    return '\n'.join(lines)


# --- pictures -----------------------------------------------------------------------------
def plot_curves(quality, path, s):
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
        target = report_training.risk_target(s, name[len('cross_sequence_'):])
        risk = q['methods'].get(report_training.risk_method(target))
        if risk and risk['kept_ratio']:
            ax.plot(100 * risk['kept_ratio'], 100 * risk['precision'], 'D', color='tab:green',
                    ms=5, label=f'risk filter, target {target:g}')
        ax.set_title(NAMES.get(name, name).split(' (')[0], fontsize=9)
        ax.set_xlabel('kept pixels (%)')
        ax.set_ylabel('precision (%)')
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc='lower left')
    fig.suptitle('Pseudo-labels of the unlabeled images: precision vs kept ratio', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(q, stems, path, cache, num=2, alpha=0.2, mode='pixel'):
    """image | annotator | conformally filtered | ground truth, for the first unlabeled
    images of the quality split, from the annotator ``cache`` (a folder) that ``q`` measured."""
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
        AnnotatorCache(cache, num_classes=len(classes), class_names=classes),
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
