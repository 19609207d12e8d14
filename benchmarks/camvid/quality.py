"""Pseudo-label quality on the unlabeled images: raw vs fixed threshold vs conformal labels.

For one annotator and one split: calibrate ``ConformalCalibrator`` s on the labeled images (as
``ConformalCalibrationHook`` does), then label every unlabeled image with each method and count,
against its ground truth:

- kept ratio: labeled (not rejected) pixels / all pixels of the images;
- precision: correct / kept pixels whose ground truth is not void (per class: by the class the
  method assigned);
- mIoU: per-class IoU of the kept labels against the ground truth, counted on the kept,
  non-void pixels only (rejected pixels are neither right nor wrong), averaged over the classes
  present in the ground truth of those pixels;
- what the kept labels are: the share of each class among them (``per_class_share``, by the
  class assigned; ``truth_share``: by their ground truth, which for ``raw`` is the class mix of
  the images), so a filter that keeps only easy classes shows.

Methods: ``raw`` (the annotator's argmax everywhere), ``threshold`` (the argmax where its
probability >= tau), ``conformal`` (prediction sets C(x) = {k : 1 - p_k <= q_k} and the paper's
foreground-first rule; without a background class it keeps the most probable class of the set),
``risk`` (the argmax where its probability >= t_k, t_k chosen by ``RiskCalibrator`` on the
labeled images so that the error of the kept labels is at most a target; ``kept_wrong`` is the
share of labeled pixels kept and wrong, the quantity the 'kept_error' risk controls).
On a data set without a background class the pixel-mode filter keeps the argmax exactly when
max p >= 1 - q: it is a confidence threshold whose tau the calibration chooses. The curves
therefore show the threshold family (every tau) with the conformal points on or off it.
"""
import os.path as osp
import time

import cv2
import numpy as np
import torch

from conformalsam_mmseg.conformal import (ConformalCalibrator, RiskCalibrator,
                                          confidence_pseudo_labels, filter_pseudo_labels,
                                          get_score)

IGNORE = 255
CURVE_BINS = 1000  # resolution of the confidence-threshold curve


class LabelCounts:
    """Confusion matrix of kept labels vs ground truth, plus kept / total pixel counts."""

    def __init__(self, num_classes):
        self.k = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.kept = 0
        self.pixels = 0
        self.labeled = 0

    def update(self, labels, gt):
        kept = labels != IGNORE
        self.kept += int(kept.sum())
        self.pixels += labels.numel()
        self.labeled += int((gt != IGNORE).sum())
        both = kept & (gt != IGNORE)
        idx = gt[both].long() * self.k + labels[both].long()
        self.confusion += torch.bincount(idx, minlength=self.k * self.k).view(self.k, self.k)

    def metrics(self, class_names):
        c = self.confusion.double()
        tp = c.diag()
        assigned, truth = c.sum(0), c.sum(1)
        union = assigned + truth - tp
        present = truth > 0
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.nan)
        kept = c.sum().clamp(min=1)   # kept pixels with a ground-truth label
        precision = torch.where(assigned > 0, tp / assigned.clamp(min=1), torch.nan)
        return dict(
            kept_ratio=self.kept / max(self.pixels, 1),
            precision=float(tp.sum() / kept),
            kept_wrong=float((c.sum() - tp.sum()) / max(self.labeled, 1)),
            mIoU=float(iou[present].nanmean()) if present.any() else float('nan'),
            per_class_precision={n: float(p) for n, p in zip(class_names, precision)},
            per_class_iou={n: float(v) for n, v in zip(class_names, iou)},
            per_class_share={n: float(a) for n, a in zip(class_names, assigned / kept)},
            truth_share={n: float(t) for n, t in zip(class_names, truth / kept)})


class ConfidenceCurve:
    """Precision and kept ratio of the argmax-where-max-p>=tau labels for every tau, in one
    pass: histograms of max p over all pixels and over the correct / non-void ones."""

    def __init__(self, bins=CURVE_BINS):
        self.bins = bins
        self.all = torch.zeros(bins, dtype=torch.int64)
        self.labeled = torch.zeros(bins, dtype=torch.int64)
        self.correct = torch.zeros(bins, dtype=torch.int64)

    def update(self, max_prob, argmax, gt):
        b = (max_prob.double() * self.bins).long().clamp_(0, self.bins - 1)
        labeled = gt != IGNORE
        self.all += torch.bincount(b.view(-1), minlength=self.bins)
        self.labeled += torch.bincount(b[labeled], minlength=self.bins)
        self.correct += torch.bincount(b[labeled & (argmax == gt)], minlength=self.bins)

    def points(self):
        """(tau, kept_ratio, precision) for tau = i / bins, i = 0..bins-1."""
        def tail(x):  # pixels with max p >= i / bins
            return x.flip(0).cumsum(0).flip(0).double()
        kept, labeled, correct = tail(self.all), tail(self.labeled), tail(self.correct)
        tau = torch.arange(self.bins, dtype=torch.float64) / self.bins
        keep = labeled > 0
        return dict(tau=tau[keep].tolist(), kept_ratio=(kept / kept[0])[keep].tolist(),
                    precision=(correct / labeled)[keep].tolist())


def methods(alphas, taus, modes=('pixel', 'class'), risk_targets=(),
            risks=('false_label_rate', 'kept_error'), delta=0.1):
    """The table's methods, in order."""
    rows = [dict(name='raw', kind='raw')]
    rows += [dict(name=f'threshold {t:g}', kind='threshold', tau=t) for t in taus]
    rows += [dict(name=f'conformal {m}, alpha {a:g}', kind='conformal', mode=m, alpha=a)
             for m in modes for a in alphas]
    rows += [dict(name=f'risk {r} {m}, target {t:g}', kind='risk', risk=r, mode=m, target=t,
                  delta=delta)
             for r in risks for m in modes for t in risk_targets]
    return rows


def evaluate(source, labeled, unlabeled, class_names, *, alphas=(0.05, 0.1, 0.2),
             taus=(0.5, 0.9), curve_alphas=(), progress=None, risk_targets=()):
    """Quality of every method on ``unlabeled``, calibrated on ``labeled``.

    Args:
        source: ``fn(stem) -> (probs (K, H, W) float32 tensor, gt (H, W) int64 tensor)``.
        labeled, unlabeled: image stems.
        curve_alphas: extra alphas of the class-mode points of the curve.
        progress: optional ``fn(iterable, desc) -> iterable`` (a progress bar).

    Returns a dict: ``methods`` (name -> metrics and settings), ``thresholds`` (method ->
    q list), ``curve`` (confidence-threshold curve), ``class_curve`` (alpha -> (kept ratio,
    precision) of class-mode conformal labels), ``calibration_seconds``, and with
    ``risk_targets`` ``risk_calibration`` (method -> the RiskCalibration as a dict).
    """
    progress = progress or (lambda it, desc: it)
    k = len(class_names)
    table = methods(alphas, taus, risk_targets=risk_targets)
    conformal = [m for m in table if m['kind'] == 'conformal']
    risk_rows = [m for m in table if m['kind'] == 'risk']
    # one histogram serves every risk row: the procedures only read it
    risk_calibrator = RiskCalibrator(k) if risk_rows else None
    curve_extra = [dict(name=f'curve class alpha {a:g}', kind='conformal', mode='class',
                        alpha=a) for a in curve_alphas if a not in alphas]
    calibrated = conformal + curve_extra
    calibrators = [ConformalCalibrator(k, alpha=m['alpha'], mode=m['mode'], check_probs=False)
                   for m in calibrated]
    lac = get_score('lac')
    start = time.perf_counter()
    for stem in progress(labeled, 'calibrating on labeled images'):
        probs, gt = source(stem)
        # the true-class scores once, for every calibrator (void pixels: any class, ignored)
        scores = lac.true_class(probs.unsqueeze(0), gt.clamp(max=k - 1).unsqueeze(0))
        for cal in calibrators:
            cal.update(scores, gt.unsqueeze(0), is_scores=True)
        if risk_calibrator is not None:
            risk_calibrator.update(probs.unsqueeze(0), gt.unsqueeze(0))
    q = {m['name']: cal.thresholds() for m, cal in zip(calibrated, calibrators)}
    risk_results = {}
    for m in risk_rows:
        cal = RiskCalibrator(k, m['target'], risk=m['risk'], delta=m['delta'], mode=m['mode'])
        cal.histogram = risk_calibrator.histogram
        risk_results[m['name']] = cal.calibrate(class_names=class_names, warn=False)
        q[m['name']] = risk_results[m['name']].thresholds
    calibration_seconds = time.perf_counter() - start

    counts = {m['name']: LabelCounts(k) for m in table + curve_extra}
    curve = ConfidenceCurve()
    for stem in progress(unlabeled, 'labeling unlabeled images'):
        probs, gt = source(stem)
        max_prob, argmax = probs.max(0)
        curve.update(max_prob, argmax, gt)
        for m in table + curve_extra:
            counts[m['name']].update(_labels(m, probs, argmax, max_prob, q), gt)

    out = dict(methods={}, thresholds={n: v.tolist() for n, v in q.items()},
               curve=curve.points(), class_curve={},
               calibration_seconds=calibration_seconds,
               risk_calibration={n: r.to_dict() for n, r in risk_results.items()})
    for m in table:
        out['methods'][m['name']] = dict(m, **counts[m['name']].metrics(class_names))
    for m in curve_extra + [m for m in conformal if m['mode'] == 'class']:
        met = counts[m['name']].metrics(class_names)
        out['class_curve'][m['alpha']] = (met['kept_ratio'], met['precision'])
    out['pixel_points'] = {m['alpha']: (out['methods'][m['name']]['kept_ratio'],
                                        out['methods'][m['name']]['precision'])
                           for m in conformal if m['mode'] == 'pixel'}
    return out


def _labels(method, probs, argmax, max_prob, q):
    kind = method['kind']
    if kind == 'raw':
        return argmax
    if kind == 'threshold':
        return argmax.masked_fill(max_prob < method['tau'], IGNORE)
    if kind == 'risk':
        return confidence_pseudo_labels(probs, q[method['name']], dtype=torch.long)
    return filter_pseudo_labels(probs.unsqueeze(0), q[method['name']], rule='foreground_first',
                                background_index=None, dtype=torch.long)[0]


def read_gt(label_dir, stem):
    """The (H, W) int64 ground truth of image ``stem`` (255 = void)."""
    path = osp.join(label_dir, stem + '.png')
    gt = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if gt is None:
        raise FileNotFoundError(f'no ground truth {path}')
    return torch.from_numpy(gt.astype(np.int64))


def cache_source(cache, image_dir, label_dir, num_classes):
    """``source`` reading the annotator cache and the ground truth of CamVid train images."""
    from conformalsam_mmseg.annotators.labeled_pairs import ground_truth_loader, load_pair
    load_gt = ground_truth_loader(num_classes)

    def source(stem):
        info = dict(img_path=osp.join(image_dir, stem + '.jpg'),
                    seg_map_path=osp.join(label_dir, stem + '.png'), reduce_zero_label=False)
        return load_pair(cache, info, num_classes, load_gt)
    return source


def simulated_source(annotator, image_dir, label_dir, class_names, img_suffix='.jpg'):
    """``source`` running a ``SimulatedAnnotator`` on the ground truth of each image."""
    def source(stem):
        gt = read_gt(label_dir, stem)
        img = cv2.imread(osp.join(image_dir, stem + img_suffix))
        probs = annotator.annotate(img, class_names, img_path=stem,
                                   gt_seg_map=gt.numpy().astype(np.uint8))
        return torch.as_tensor(probs, dtype=torch.float32), gt
    return source
