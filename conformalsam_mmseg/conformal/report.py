"""What calibration found and what filtering kept: a printable table and a JSON file.

Calibration part, per group: n (calibration pixels), alpha, q, and whether q is +inf because
n < (1 - alpha) / alpha (too little data to promise coverage: such a group's sets hold every
class, so filtering rejects nothing on its account).

Filtering part, per class k, from :class:`FilterStats` accumulated over filtered images:

- annotator pixels: pixels whose annotator argmax is k (the unfiltered pseudo-label);
- kept ratio: the share of those that filtering did not reject (whatever label they got);
- assigned: pixels whose final pseudo-label is k;
- precision (when ground truth is given): the share of assigned pixels, among those with a
  ground-truth label, whose ground truth is k.
"""
import json
import math

import torch

from .inputs import IGNORE_INDEX, check_labels
from .quantile import min_calibration_size


class FilterStats:
    """Streaming per-class counts of what filtering did to the annotator's labels."""
    FIELDS = ('annotator', 'kept', 'assigned', 'assigned_labeled', 'correct')

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        for field in self.FIELDS:
            setattr(self, field, torch.zeros(num_classes, dtype=torch.int64))
        self.pixels = 0

    def update(self, pseudo_labels, annotator_labels, labels=None):
        """Count one batch.

        Args:
            pseudo_labels: filtered labels (B, H, W), ``ignore_index`` where rejected.
            annotator_labels: the annotator's argmax (B, H, W) (e.g. ``probs.argmax(1)``).
            labels: ground truth (B, H, W) or None.
        """
        pseudo, argmax = torch.as_tensor(pseudo_labels), torch.as_tensor(annotator_labels)
        tensors = [pseudo, argmax] + ([] if labels is None else [torch.as_tensor(labels)])
        if any(t.shape != pseudo.shape for t in tensors):
            raise ValueError(
                'pseudo-labels, annotator labels and ground truth must have the same shape, got '
                f'{[tuple(t.shape) for t in tensors]}')
        k = self.num_classes
        pseudo, kept = check_labels(pseudo, k, self.ignore_index)
        argmax, argmax_valid = check_labels(argmax, k, self.ignore_index)
        if argmax_valid is not None and not argmax_valid.all():
            raise ValueError('annotator labels must be class indices (an argmax), not '
                             f'{self.ignore_index}')
        if kept is None:
            kept = torch.ones_like(pseudo, dtype=torch.bool)
        self.annotator += torch.bincount(argmax.view(-1), minlength=k)
        self.kept += torch.bincount(argmax[kept], minlength=k)
        self.assigned += torch.bincount(pseudo[kept], minlength=k)
        if labels is not None:
            truth, labeled = check_labels(torch.as_tensor(labels), k, self.ignore_index)
            counted = kept if labeled is None else kept & labeled
            self.assigned_labeled += torch.bincount(pseudo[counted], minlength=k)
            self.correct += torch.bincount(pseudo[counted & (pseudo == truth)], minlength=k)
        self.pixels += pseudo.numel()

    def state_dict(self):
        return dict(pixels=self.pixels,
                    **{field: getattr(self, field).clone() for field in self.FIELDS})

    def load_state_dict(self, state):
        self.pixels = int(state['pixels'])
        for field in self.FIELDS:
            getattr(self, field).copy_(state[field])


class ConformalReport:
    """A report as a dict (:meth:`to_dict`), a table (``str(report)``) or a JSON file."""

    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return self.data

    def save_json(self, path):
        with open(path, 'w') as f:
            json.dump(self.data, f, indent=1, allow_nan=False)

    def __str__(self):
        return self.table()

    def table(self):
        cal = self.data['calibration']
        lines = [
            f"ConformalSAM calibration: mode={cal['mode']}, score={cal['score']}, "
            f"method={cal['method']}, {cal['pixels']:,} labeled pixels"]
        if cal['mode'] == 'image':
            img = cal['images']
            lines.append(
                f"{img['count']} images ({img['with_pixels']} with labeled pixels, "
                f"{img['finite_q']} with a finite q_i); q_i min/median/max "
                f"{_fmt_q(img['q_min'])} / {_fmt_q(img['q_median'])} / {_fmt_q(img['q_max'])}")
            lines.append(f"aggregated ({cal['image_aggregation']}) q = {_fmt_q(cal['q'])}")
        else:
            width = max(len('group'), *(len(g['name']) for g in cal['groups']))
            lines.append(f"{'group':<{width}}  {'n':>13}  {'alpha':>6}  q")
            for g in cal['groups']:
                q = _fmt_q(g['q'])
                if g['q_infinite']:
                    q += f" (too little data: n={g['n']:,} < {g['n_min']:,} needed)"
                lines.append(f"{g['name']:<{width}}  {g['n']:>13,}  {g['alpha']:>6g}  {q}")
        classes = self.data.get('classes')
        if classes:
            total = self.data['filtering']
            lines.append('')
            lines.append(
                f"filtering: {total['pixels']:,} pixels, kept {_fmt_ratio(total['kept_ratio'])}"
                f", precision {_fmt_ratio(total['precision'])}")
            width = max(len('class'), *(len(c['name']) for c in classes))
            lines.append(f"{'class':<{width}}  {'annotator':>11}  {'kept ratio':>10}  "
                         f"{'assigned':>11}  {'precision':>9}")
            for c in classes:
                lines.append(
                    f"{c['name']:<{width}}  {c['annotator']:>11,}  "
                    f"{_fmt_ratio(c['kept_ratio']):>10}  {c['assigned']:>11,}  "
                    f"{_fmt_ratio(c['precision']):>9}")
        for note in self.data['notes']:
            lines.append(f'note: {note}')
        return '\n'.join(lines)


def calibration_report(calibrator, stats=None, class_names=None):
    """A :class:`ConformalReport` of ``calibrator`` and, optionally, filtering ``stats``."""
    k = calibrator.num_classes
    if class_names is not None and len(class_names) != k:
        raise ValueError(f'got {len(class_names)} class names for {k} classes')
    names = list(class_names) if class_names else [f'class {i}' for i in range(k)]
    counts = calibrator.group_counts()
    pixels = int(counts.sum())
    q = calibrator.group_thresholds() if pixels else torch.full((len(counts),), math.inf)
    alphas = calibrator.group_alphas()
    group_names = calibrator.group_names(names if calibrator.mode == 'class' else None)
    groups = [dict(name=name, n=int(n), alpha=a, q=_json_q(qg), q_infinite=math.isinf(qg),
                   n_min=min_calibration_size(a))
              for name, n, a, qg in zip(group_names, counts.tolist(), alphas, q.tolist())]
    notes = []
    if not pixels:
        notes.append('empty calibration set: no labeled pixel seen, no threshold')
    calibration = dict(mode=calibrator.mode, score=calibrator.score_fn.name,
                       method=calibrator.method, pixels=pixels, groups=groups)
    if calibrator.mode == 'image':
        seen = counts > 0
        finite = sorted(v for v, s in zip(q.tolist(), seen.tolist()) if s and math.isfinite(v))
        calibration['images'] = dict(
            count=len(groups), with_pixels=int(seen.sum()), finite_q=len(finite),
            q_min=finite[0] if finite else None, q_max=finite[-1] if finite else None,
            q_median=finite[(len(finite) - 1) // 2] if finite else None)
        calibration['image_aggregation'] = calibrator.image_aggregation
        calibration['q'] = _json_q(float(calibrator.thresholds()[0])) if pixels else None
        few = [g for g in groups if g['q_infinite'] and g['n'] > 0]
        if few:
            notes.append(
                f"{len(few)} images have q_i = +inf (fewer than {few[0]['n_min']} labeled "
                'pixels: too little data for alpha)')
    else:
        for g in groups:
            if g['q_infinite'] and pixels:
                notes.append(
                    f"q is +inf for {g['name']}: n={g['n']:,} calibration pixels, but alpha="
                    f"{g['alpha']:g} needs at least {g['n_min']:,}; its sets hold every class, "
                    'so nothing is filtered on its account')
    data = dict(calibration=calibration, notes=notes)
    if stats is not None:
        if stats.num_classes != k:
            raise ValueError(f'filter stats have {stats.num_classes} classes, the calibrator {k}')
        data['classes'] = [
            dict(name=names[c], annotator=int(stats.annotator[c]), kept=int(stats.kept[c]),
                 kept_ratio=_ratio(stats.kept[c], stats.annotator[c]),
                 assigned=int(stats.assigned[c]),
                 precision=_ratio(stats.correct[c], stats.assigned_labeled[c]))
            for c in range(k)]
        data['filtering'] = dict(
            pixels=stats.pixels, kept_ratio=_ratio(stats.kept.sum(), stats.annotator.sum()),
            precision=_ratio(stats.correct.sum(), stats.assigned_labeled.sum()))
    return ConformalReport(data)


def _ratio(num, den):
    return None if int(den) == 0 else int(num) / int(den)


def _json_q(value):
    return None if math.isinf(value) else float(value)


def _fmt_q(value):
    return 'inf' if value is None else f'{value:.6f}'


def _fmt_ratio(value):
    return '-' if value is None else f'{100 * value:.1f}%'
