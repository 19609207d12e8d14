"""The annotator pseudo-label head: the annotator's labels, filtered by conformal prediction.

ConformalSAM, Stage I: the annotator (SEEM in the paper, any annotator here) gives per-pixel
class probabilities P; the calibrator, run on the labeled images, gives the threshold(s) q;
an unlabeled pixel x gets the prediction set C(x) = {k : s_k(x) <= q_k} (LAC: s_k = 1 - P_k)
and a label by the set-to-label rule (the paper's foreground-first "class-conditional
filtering" by default), or 255 when rejected.

With ``filter='risk'`` or ``'confidence'`` the thresholds are confidence thresholds t_k
instead (the risk calibration's, or a fixed ``confidence_threshold``): a pixel keeps the
annotator's argmax k when p_k >= t_k, else 255 (t_k = +inf keeps nothing).

The head holds every option of the filter, so a config shows them in one place and
``--cfg-options model.pseudo_label_head.<option>=...`` reaches each; ``ConformalCalibrationHook``
reads them from here.
"""
import math

import torch
from torch import nn

from mmseg.registry import MODELS

from ...annotators.cache import topk_to_dense
from ...annotators.fields import INDEX_KEY, PROB_KEY
from ...conformal import (RULES, ConformalCalibrator, RiskCalibrator, confidence_pseudo_labels,
                          filter_pseudo_labels)

PADDED = 255
FILTERS = ('conformal', 'risk', 'confidence')
DEFAULT_RISK_CFG = dict(target_error=0.05, risk='false_label_rate', delta=0.1,
                        fallback='pooled')


@MODELS.register_module()
class AnnotatorPseudoLabelHead(nn.Module):
    """Pseudo-labels from cached annotator output and the calibrator's thresholds.

    Any annotator (SEEM in the paper, CLIPSeg, a precomputed or simulated one): the head reads
    the cached probabilities, whatever made them. Registered also as ``SEEMPseudoLabelHead``,
    its former name, so configs written with it still build.

    It has no parameters. The thresholds q_k are a buffer (``thresholds``, float64, (K,);
    NaN until :meth:`set_thresholds` is called), so they are saved in and restored from
    checkpoints with the model.

    Input: a list of ``SegDataSample`` carrying ``annotator_topk_index`` and
    ``annotator_topk_prob`` (``PackAnnotatorOutput``), or a (B, K, H, W) probability tensor.
    From the top-k, per-class probabilities are rebuilt with **probability 0 for every class
    outside the top-k**: under LAC such a class is in C(x) only when q_k >= 1, so prediction
    sets are cut to the k most probable classes. With one threshold for all classes (the
    paper's pixel-wise mode) that changes no label for k >= 2 under 'foreground_first' and
    'singleton', nor for k >= 1 under 'argmax_in_set'; with per-class thresholds a rarer class
    beyond the top-k may be missing from a set. Pixels whose top-1 index is 255 are padding:
    they get label 255 and count in no statistic.

    Args:
        num_classes: K.
        classes: optional class names, used in the per-class statistic names (the
            calibration hook sets the data set's when None).
        rule: set-to-label rule, ``'foreground_first'`` (default, the paper's),
            ``'singleton'`` or ``'argmax_in_set'``.
        background_index: the background class for ``'foreground_first'`` (0 on VOC), or None
            for data sets without one (ADE20K, CamVid).
        score: the nonconformity score the thresholds were calibrated with ('lac', the paper's).
        ignore_index: label of rejected pixels (255).
        per_class_stats: also report the kept ratio per class.
        stats_prefix: prefix of the statistic names.
        filter_device: device the filter runs on. None (default): wherever the input is
            (the GPU in a GPU run). 'cpu': the compact top-k is moved to the CPU and the
            labels moved back. Both give the same labels; on an H100 the GPU is 3.5-5x
            faster for a CamVid batch at 320 px (benchmarks/bench_filter_device.py).
        thresholds: optional fixed thresholds (one number or one per class), set at
            construction instead of by a calibration.
        filter: ``'conformal'`` (default, the paper's): the calibration hook sets conformal
            q_k (``alpha``, ``mode``, ``score``) and ``rule`` turns prediction sets into labels.
            ``'risk'``: the calibration hook sets confidence thresholds t_k so that the error of
            the kept labels is at most ``risk_cfg['target_error']`` (docs/conformal.md) and the
            label is the annotator's argmax where its probability is >= t_k. ``'confidence'``:
            the same labels at a fixed ``confidence_threshold`` (0: the raw annotator labels),
            no calibration.
        alpha: the conformal error rate (paper: 0.05).
        mode: 'pixel' (one threshold, the paper's), 'class' or 'image' (conformal) /
            'pixel' or 'class' (risk).
        confidence_threshold: ``filter='confidence'``'s tau in [0, 1].
        risk_cfg: ``filter='risk'``: ``dict(target_error=0.05, risk='false_label_rate',
            delta=0.1, fallback='pooled')`` (``RiskCalibrator``'s options).
    """

    def __init__(self, num_classes, classes=None, rule='foreground_first', background_index=0,
                 score='lac', ignore_index=255, per_class_stats=True, stats_prefix='pseudo_',
                 filter_device=None, thresholds=None, filter='conformal', alpha=0.05,
                 mode='pixel', confidence_threshold=None, risk_cfg=None):
        super().__init__()
        if filter not in FILTERS:
            raise ValueError(f'pseudo_label_head.filter must be one of {FILTERS}, got '
                             f'{filter!r}')
        self.filter = filter
        self.alpha, self.mode = alpha, mode
        self.risk_cfg = dict(DEFAULT_RISK_CFG, **(risk_cfg or {}))
        unknown = set(self.risk_cfg) - set(DEFAULT_RISK_CFG)
        if unknown:
            raise ValueError(f'pseudo_label_head.risk_cfg: unknown keys {sorted(unknown)}; '
                             f'the options are {sorted(DEFAULT_RISK_CFG)}')
        self.confidence_threshold = confidence_threshold
        if filter == 'conformal':
            # bad alpha / mode fail here, when the model is built, not after data loading
            ConformalCalibrator(max(int(num_classes), 1), alpha=alpha, mode=mode, score=score)
        elif filter == 'risk':
            RiskCalibrator(max(int(num_classes), 1), mode=mode, **self.risk_cfg)
        if filter == 'confidence' and thresholds is None:
            tau = confidence_threshold
            if tau is None or not 0 <= float(tau) <= 1:
                raise ValueError("pseudo_label_head.filter='confidence' needs "
                                 'confidence_threshold in [0, 1] (0: the raw annotator labels),'
                                 f' got {tau!r}')
            thresholds = float(tau)
        if rule not in RULES:
            raise ValueError(f'rule must be one of {RULES}, got {rule!r}')
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f'{len(classes)} class names for num_classes={num_classes}')
        self.num_classes = int(num_classes)
        self.has_class_names = classes is not None
        self.classes = (list(map(str, classes)) if classes is not None else
                        [f'class_{k}' for k in range(num_classes)])
        self.rule = rule
        self.background_index = background_index
        self.score = score
        self.ignore_index = ignore_index
        self.per_class_stats = per_class_stats
        self.stats_prefix = stats_prefix
        if filter_device is not None:
            try:
                torch.device(filter_device)
            except (RuntimeError, TypeError) as e:
                raise ValueError(f'pseudo_label_head.filter_device={filter_device!r} is not a '
                                 "device: use None (where the batch is) or a torch device such "
                                 f"as 'cpu' ({e})") from None
        self.filter_device = filter_device
        self.register_buffer('thresholds',
                             torch.full((self.num_classes, ), math.nan, dtype=torch.float64))
        if thresholds is not None:
            self.set_thresholds(thresholds)

    @property
    def needs_calibration(self):
        """Whether the calibration hook sets the thresholds ('conformal', 'risk')."""
        return self.filter != 'confidence'

    def set_classes(self, classes):
        """Name the classes (the data set's), checking there are ``num_classes`` of them."""
        if len(classes) != self.num_classes:
            raise ValueError(f'pseudo_label_head.num_classes is {self.num_classes} but the data '
                             f'set has {len(classes)} classes {list(classes)}; set '
                             f'model.pseudo_label_head.num_classes={len(classes)}')
        self.classes = list(map(str, classes))
        self.has_class_names = True

    # --- thresholds -----------------------------------------------------------------------
    def set_thresholds(self, q):
        """Set q (or t with ``filter='confidence'``): one number or one per class
        (``ConformalCalibrator.thresholds()``, ``RiskCalibrator.thresholds()``); +inf keeps
        nothing."""
        q = torch.as_tensor(q, dtype=torch.float64).reshape(-1)
        if q.numel() == 1:
            q = q.expand(self.num_classes)
        if q.numel() != self.num_classes:
            raise ValueError(f'got {q.numel()} thresholds for {self.num_classes} classes')
        if torch.isnan(q).any():
            raise ValueError('thresholds contain NaN; the calibration produced no threshold')
        self.thresholds.copy_(q.to(self.thresholds.device))

    @property
    def is_calibrated(self):
        return not bool(torch.isnan(self.thresholds).any())

    def _checked_thresholds(self):
        if not self.is_calibrated:
            raise RuntimeError(
                'AnnotatorPseudoLabelHead has no thresholds: conformal calibration has not run. '
                'Calibrate on the labeled images first (ConformalCalibrator, or the '
                'calibration hook), then call set_thresholds(calibrator.thresholds()).')
        return self.thresholds.detach().cpu()

    # --- inputs ---------------------------------------------------------------------------
    def probabilities(self, data_samples):
        """Dense (B, K, H, W) float32 probabilities and the (B, H, W) bool mask of non-padded
        pixels, from the samples' top-k fields (on the samples' device)."""
        index, prob = self._stack_topk(data_samples)
        probs = torch.stack([topk_to_dense(i, p, self.num_classes, padded_value=PADDED)
                             for i, p in zip(index, prob)])
        return probs, index[:, 0] != PADDED

    def _stack_topk(self, data_samples):
        index, prob = [], []
        for i, sample in enumerate(data_samples):
            if INDEX_KEY not in sample or PROB_KEY not in sample:
                raise KeyError(f'data sample {i} has no {INDEX_KEY}/{PROB_KEY}; load the '
                               'annotator cache with LoadAnnotatorOutput and pack with '
                               'PackAnnotatorOutput')
            index.append(sample.get(INDEX_KEY).data)
            prob.append(sample.get(PROB_KEY).data)
        shapes = {tuple(t.shape) for t in index}
        if len(shapes) != 1:
            raise ValueError(f'annotator fields of different sizes in one batch {shapes}: pad '
                             'them to the crop size in the pipeline with PadSegFields')
        return torch.stack(index), torch.stack(prob)

    # --- the pseudo-labels -----------------------------------------------------------------
    @torch.no_grad()
    def forward(self, inputs, valid_mask=None):
        """Pseudo-labels and statistics.

        Args:
            inputs: a list of ``SegDataSample`` with the annotator fields, or a
                (B, K, H, W) / (K, H, W) probability tensor.
            valid_mask: optional (B, H, W) bool, False = padding (tensor input only).

        Returns:
            ``(labels, stats)``: labels (B, H, W) int64 on the input's device, a class index
            or ``ignore_index`` (rejected or padded); stats a dict of floats:
            ``<prefix>kept_ratio`` (kept / non-padded pixels) and, with ``per_class_stats``,
            ``<prefix>kept_ratio/<class>`` (kept / non-padded pixels whose annotator top-1 class
            is that class, for the classes that are top-1 somewhere in the batch).
        """
        q = self._checked_thresholds()
        if isinstance(inputs, torch.Tensor):
            probs = inputs if inputs.dim() == 4 else inputs.unsqueeze(0)
            if probs.shape[1] != self.num_classes:
                raise ValueError(f'probabilities have {probs.shape[1]} classes, the head '
                                 f'{self.num_classes}')
            device = probs.device
            valid = (torch.ones(probs.shape[:1] + probs.shape[2:], dtype=torch.bool,
                                device=device) if valid_mask is None else
                     valid_mask.reshape(probs.shape[:1] + probs.shape[2:]).bool())
            work = self._to_filter_device(probs)
            top1 = work.argmax(1)
            labels = self._filter(work, q).to(work.device)
            valid = valid.to(work.device)
        else:
            index, prob = self._stack_topk(inputs)
            device = index.device
            index, prob = self._to_filter_device(index), self._to_filter_device(prob)
            top1 = index[:, 0].long()
            valid = top1 != PADDED
            labels = torch.stack([
                self._filter(topk_to_dense(i, p, self.num_classes, padded_value=PADDED), q)
                for i, p in zip(index, prob)]).to(index.device)
        labels.masked_fill_(~valid, self.ignore_index)
        stats = self._stats(labels, top1, valid)
        return labels.to(device), stats

    def _to_filter_device(self, x):
        return x if self.filter_device is None else x.to(self.filter_device)

    def _filter(self, probs, q):
        if self.filter != 'conformal':
            return confidence_pseudo_labels(probs, q, ignore_index=self.ignore_index,
                                            dtype=torch.long)
        return filter_pseudo_labels(
            probs, q, rule=self.rule, background_index=self.background_index, score=self.score,
            ignore_index=self.ignore_index, dtype=torch.long)

    def _stats(self, labels, top1, valid):
        kept = (labels != self.ignore_index) & valid
        n_valid = int(valid.sum())
        p = self.stats_prefix
        stats = {f'{p}kept_ratio': float(kept.sum()) / n_valid if n_valid else 0.0}
        if self.per_class_stats and n_valid:
            cls = top1[valid]
            total = torch.bincount(cls, minlength=self.num_classes)
            kept_count = torch.bincount(top1[kept], minlength=self.num_classes)
            for k in total.nonzero().view(-1).tolist():
                stats[f'{p}kept_ratio/{self.classes[k]}'] = (
                    float(kept_count[k]) / float(total[k]))
        return stats

    def extra_repr(self):
        return (f'num_classes={self.num_classes}, filter={self.filter!r}, alpha={self.alpha}, '
                f'mode={self.mode!r}, rule={self.rule!r}, '
                f'background_index={self.background_index}, score={self.score!r}, '
                f'calibrated={self.is_calibrated}')


# The former name, for configs and code written with it.
SEEMPseudoLabelHead = AnnotatorPseudoLabelHead
MODELS.register_module(name='SEEMPseudoLabelHead', module=AnnotatorPseudoLabelHead)
