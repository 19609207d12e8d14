"""Stage I of ConformalSAM: calibrate the annotator on the labeled images before training."""
import json
import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from tqdm import tqdm

from ...annotators.base import image_stem
from ...annotators.cache import AnnotatorCache, read_manifest, topk_to_dense
from ...annotators.labeled_pairs import ground_truth_loader, labeled_pairs
from ...conformal.truncation import truncated_counts, truncation_message
from ...conformal import (ConformalCalibrator, FilterStats, RiskCalibrator,
                          annotator_argmax, calibration_report, confidence_pseudo_labels,
                          filter_pseudo_labels, prediction_sets, threshold_grid)
from .calibration_key import calibration_key
from .calibration_pictures import plot_calibration, plot_risk_calibration


@HOOKS.register_module()
class ConformalCalibrationHook(Hook):
    """Calibrates the annotator on the labeled images and hands the thresholds to the model.

    Before training (and so again after a resume), and every ``interval`` iterations if set,
    it streams the cached annotator output of every labeled image against its ground truth
    through a :class:`ConformalCalibrator` (images sharded over the ranks, histograms merged
    with all_reduce), then sets ``model.pseudo_label_head``'s thresholds, which the checkpoint
    saves. It measures the coverage on held-out data by ``holdout_folds``-fold
    cross-calibration (each fold's pixels against thresholds calibrated on the other folds),
    and the kept-pixel ratio and precision of the filtered labels on the labeled images. It
    logs them and writes ``calibration_report.json`` and ``calibration_report.png`` into the
    work dir.

    What it calibrates is the model's: ``filter``, ``alpha``, ``mode``, ``score``, ``rule``,
    ``background_index`` and ``risk_cfg`` are read from ``model.pseudo_label_head``, and the
    annotator cache from the train dataset (``SemiDataset(annotator_cache=...)``), so each is
    set in one place of the config. With ``filter='risk'`` a :class:`RiskCalibrator` chooses
    confidence thresholds t_k so that the error of the kept labels is at most ``target_error``
    (docs/conformal.md); its report gives the thresholds, the kept ratio on the unlabeled
    images, and the calibration images' estimated error with a 1 - delta interval; a 'keep
    nothing' outcome is logged as a warning with the number of labeled images needed. With
    ``filter='confidence'`` (a fixed threshold) there is nothing to calibrate and the hook
    says so.

    Args:
        holdout_folds: folds for the held-out coverage (0 or 1: not measured).
        interval: recalibrate every this many iterations (None: only before training).
    """
    priority = 'HIGH'
    # options that now live on the model's pseudo-label head or the dataset
    MOVED = dict(cache_dir='train_dataloader.dataset.annotator_cache',
                 **{k: f'model.pseudo_label_head.{k}' for k in (
                     'alpha', 'mode', 'score', 'rule', 'background_index', 'filter')},
                 **{k: f'model.pseudo_label_head.risk_cfg.{k}' for k in (
                     'target_error', 'risk', 'delta', 'fallback')})

    def __init__(self, holdout_folds=5, interval=None, **moved):
        if moved:
            raise TypeError(
                'ConformalCalibrationHook reads ' + ', '.join(sorted(moved)) + ' from the '
                'model and the dataset; set ' + ', '.join(
                    self.MOVED.get(k, f'(unknown option {k!r})') for k in sorted(moved))
                + ' instead (docs/conformalsam.md).')
        self.holdout_folds = holdout_folds if holdout_folds and holdout_folds > 1 else 0
        self.interval = interval
        self.last_report = None
        self._key = None          # calibration_key of the thresholds the head holds
        self._scalars = {}        # what the calibration logged, for every later log line
        self._loaded = None       # the calibration record of a loaded checkpoint

    # --- when -------------------------------------------------------------------------------
    def before_train(self, runner):
        head = self._head(runner)
        if not head.needs_calibration:
            runner.logger.info(
                f'ConformalSAM: no calibration; the pseudo-label head keeps the annotator\'s '
                f'argmax where its probability is >= {head.confidence_threshold} '
                "(pseudo_label_head.filter='confidence').")
            return
        if self._reuse(runner, head):
            return
        self.calibrate(runner)

    # --- the calibration in checkpoints: a resume does not calibrate again -------------------
    def before_save_checkpoint(self, runner, checkpoint):
        if self._key is not None:
            checkpoint['conformal_calibration'] = dict(key=self._key, scalars=self._scalars,
                                                       report=self.last_report)

    def after_load_checkpoint(self, runner, checkpoint):
        self._loaded = checkpoint.get('conformal_calibration')

    def _reuse(self, runner, head):
        """Keep the loaded checkpoint's thresholds when its calibration had the same inputs
        (:func:`calibration_key`); else say why it calibrates again."""
        if self._loaded is None:
            return False
        self._inputs(runner)   # names the head's classes, checks the cache
        key = calibration_key(head, runner.train_dataloader.dataset, self.holdout_folds)
        if key != self._loaded.get('key') or not head.is_calibrated:
            runner.logger.info('ConformalSAM: the checkpoint\'s calibration had other inputs '
                               '(filter options, labeled images or cache entries); '
                               'calibrating again.')
            return False
        self._key, self._scalars = key, dict(self._loaded.get('scalars') or {})
        self.last_report = self._loaded.get('report')
        for name, value in self._scalars.items():
            runner.message_hub.update_scalar(name, value)
        runner.logger.info('ConformalSAM: thresholds from the checkpoint (same filter options, '
                           'labeled images and cache entries); calibration skipped.')
        return True

    def _remember(self, runner, head):
        """After a calibration: its key and logged scalars, for checkpoints."""
        self._key = calibration_key(head, runner.train_dataloader.dataset, self.holdout_folds)
        self._scalars = {name: float(buffer.current())
                         for name, buffer in runner.message_hub.log_scalars.items()
                         if name.startswith('train/conformal_')}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if (self.interval and (runner.iter + 1) % self.interval == 0
                and self._head(runner).needs_calibration):
            self.calibrate(runner)

    # --- what -------------------------------------------------------------------------------
    def calibrate(self, runner):
        head = self._head(runner)
        if head.filter == 'risk':
            self.calibrate_risk(runner)
        else:
            self.calibrate_conformal(runner)
        self._remember(runner, head)

    def calibrate_conformal(self, runner):
        head, dataset, classes, cache, load_gt, images = self._inputs(runner)
        self.alpha, self.mode, self.score = head.alpha, head.mode, head.score
        labeled, num_classes = dataset.labeled, len(classes)
        rank, _ = get_dist_info()

        def calibrator():
            return ConformalCalibrator(num_classes, alpha=self.alpha, mode=self.mode,
                                       score=self.score, check_probs=False)

        main = calibrator()
        folds = [calibrator() for _ in range(self.holdout_folds)]
        self._stream(runner, 'calibrating', labeled, images, cache, load_gt,
                     lambda i, probs, gt: [c.update(probs, gt) for j, c in
                                           enumerate([main] + folds)
                                           if j == 0 or (i % self.holdout_folds) != j - 1])
        if is_distributed():  # every rank ends with the thresholds of all labeled pixels
            main, folds = main.all_reduce(), [c.all_reduce() for c in folds]
        q = main.thresholds()
        head.set_thresholds(q)

        stats = FilterStats(num_classes)
        covered = torch.zeros(2, dtype=torch.float64)  # pixels whose class is in C(x), pixels
        truncated = torch.zeros(2, dtype=torch.float64)  # true class cut from the cache, labeled
        topk = (read_manifest(self.cache_dir) or {}).get('topk')
        fold_q = [c.thresholds() for c in folds]

        def measure(i, probs, gt):
            stats.update(self._filter(probs, q), probs.argmax(1), gt)
            truncated.add_(torch.tensor(truncated_counts(probs, gt, topk), dtype=torch.float64))
            if folds:
                sets = prediction_sets(probs, fold_q[i % self.holdout_folds], score=self.score)
                valid = gt != 255
                hit = sets.gather(1, gt.clamp(max=num_classes - 1).long().unsqueeze(1))[:, 0]
                covered[0] += (hit & valid).sum()
                covered[1] += valid.sum()
        self._stream(runner, 'measuring', labeled, images, cache, load_gt, measure)
        if is_distributed():
            stats = self._reduce_stats(stats)
            torch_dist.all_reduce(covered)
            torch_dist.all_reduce(truncated)

        report = calibration_report(main, stats, class_names=list(classes)).to_dict()
        report['alpha'] = self.alpha
        report['holdout_coverage'] = (float(covered[0] / covered[1])
                                      if self.holdout_folds and covered[1] > 0 else None)
        report['holdout_folds'] = self.holdout_folds
        fraction = float(truncated[0] / truncated[1]) if truncated[1] > 0 else 0.0
        report['truncation'] = dict(topk=topk, num_classes=num_classes, fraction=fraction,
                                    message=truncation_message(fraction, topk, num_classes))
        if topk is not None and topk < num_classes and fraction > 0:
            log = runner.logger.warning if fraction >= self.alpha else runner.logger.info
            log(f'ConformalSAM calibration: {report["truncation"]["message"]}')
        self.last_report = report
        self._log(runner, report, q, classes)
        if rank == 0:
            self._write(runner.work_dir, report, q, classes)

    def calibrate_risk(self, runner):
        """The risk-controlled filter: thresholds t_k from the labeled images, then the kept
        ratio and precision on the labeled images and the kept ratio on the unlabeled ones."""
        head, dataset, classes, cache, load_gt, images = self._inputs(runner)
        labeled, num_classes = dataset.labeled, len(classes)
        rank, world_size = get_dist_info()

        calibrator = RiskCalibrator(num_classes, mode=head.mode, **head.risk_cfg)
        self._stream(runner, 'calibrating', labeled, images, cache, load_gt,
                     lambda i, probs, gt: calibrator.update(probs, gt))
        calibrator = calibrator.all_reduce()   # every rank: all labeled images
        result = calibrator.calibrate(class_names=list(classes), warn=False)
        t = result.thresholds
        head.set_thresholds(t)

        stats, unlabeled_stats = FilterStats(num_classes), FilterStats(num_classes)
        self._stream(runner, 'measuring', labeled, images, cache, load_gt,
                     lambda i, probs, gt: stats.update(confidence_pseudo_labels(probs, t),
                                                       annotator_argmax(probs)[1], gt))
        unlabeled = dataset.unlabeled
        for i in tqdm(range(rank, len(unlabeled), world_size), disable=rank != 0,
                      desc='ConformalSAM kept ratio on unlabeled images', unit='img',
                      dynamic_ncols=True):
            info = unlabeled.get_data_info(i)
            entry = cache.load(image_stem(info['img_path']), img_path=info['img_path'])
            probs = topk_to_dense(entry.index, entry.prob, num_classes).unsqueeze(0)
            unlabeled_stats.update(confidence_pseudo_labels(probs, t),
                                   annotator_argmax(probs)[1])
        if is_distributed():
            stats = self._reduce_stats(stats)
            unlabeled_stats = self._reduce_stats(unlabeled_stats)

        labeled_report = calibration_report_stats(stats, classes)
        unlabeled_report = calibration_report_stats(unlabeled_stats, classes)
        pooled = calibrator.group_selection(None)[0]
        report = dict(filter='risk', calibration=result.to_dict(),
                      labeled=labeled_report, unlabeled=unlabeled_report,
                      risk_curve=dict(thresholds=[None if v == float('inf') else v for v in
                                                  threshold_grid(
                                                      calibrator.histogram.num_bins).tolist()],
                                      risk=pooled.risk.tolist()))
        self.last_report = report
        self._log_risk(runner, result, report, classes)
        if rank == 0:
            with open(osp.join(runner.work_dir, 'calibration_report.json'), 'w') as f:
                json.dump(report, f, indent=2, default=_json_default)
            plot_risk_calibration(osp.join(runner.work_dir, 'calibration_report.png'), report,
                                  t, classes)

    def _log_risk(self, runner, result, report, classes):
        hub = runner.message_hub
        kept = report['unlabeled']['filtering']['kept_ratio']
        pooled = result.groups[0]
        lo, hi = pooled.risk_interval
        t = result.thresholds.tolist()
        shown = _shown(t, classes)
        runner.logger.info(
            f'ConformalSAM risk calibration ({result.risk} <= {result.target:g}, '
            f'delta={result.delta:g}, mode={result.mode}, {pooled.n} labeled images): t = '
            f'{shown}; kept ratio on the unlabeled images '
            + ('-' if kept is None else f'{kept:.4f}')
            + f'; estimated {result.risk} on the labeled images {pooled.risk:.4f} '
            f'[{lo:.4f}, {hi:.4f}] ({1 - result.delta:g} interval)\n{result.table()}')
        for note in result.notes:
            runner.logger.warning(f'ConformalSAM risk calibration: {note}')
        _log_thresholds(hub, 'train/conformal_t', [min(float(v), 2.0) for v in t], classes)
        if kept is not None:
            hub.update_scalar('train/conformal_kept_ratio', kept)
        hub.update_scalar('train/conformal_estimated_risk', pooled.risk)

    @staticmethod
    def _head(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        head = getattr(model, 'pseudo_label_head', None)
        if head is None:
            raise TypeError('ConformalCalibrationHook needs a ConformalSAM model (model.type='
                            f"'ConformalSAM' with a pseudo_label_head), got "
                            f'{type(model).__name__}.')
        return head

    def _inputs(self, runner):
        """What both calibrations read: the model's pseudo-label head (named with the data
        set's classes), the semi-supervised train dataset, its classes (checked against the
        cache), the annotator cache, the ground-truth loader and this rank's share of the
        labeled images."""
        head = self._head(runner)
        dataset = runner.train_dataloader.dataset
        self.cache_dir = getattr(dataset, 'annotator_cache', None)
        if not self.cache_dir:
            raise ValueError(
                'ConformalCalibrationHook: the train dataset has no annotator cache; set '
                "train_dataloader.dataset.annotator_cache (a SemiDataset's) to the folder of "
                'tools/generate_pseudo_labels.py (docs/conformalsam.md).')
        classes = tuple(dataset.labeled.metainfo['classes'])
        if head.has_class_names and tuple(head.classes) != classes:
            raise ValueError(f'model.pseudo_label_head.classes {head.classes} differ from the '
                             f'data set\'s {list(classes)}; remove them or set the same ones.')
        head.set_classes(classes)
        self.rule, self.background_index = head.rule, head.background_index
        self._check_classes(classes)
        cache = AnnotatorCache(self.cache_dir, num_classes=len(classes), class_names=classes)
        load_gt = ground_truth_loader(len(classes))
        rank, world_size = get_dist_info()
        images = list(range(rank, len(dataset.labeled), world_size))
        return head, dataset, classes, cache, load_gt, images

    def _stream(self, runner, what, dataset, images, cache, load_gt, fn):
        rank, _ = get_dist_info()
        infos = [dataset.get_data_info(i) for i in images]
        progress = (lambda it: tqdm(it, desc=f'ConformalSAM {what} on labeled images',
                                    unit='img', disable=rank != 0, dynamic_ncols=True))
        pairs = labeled_pairs(cache, infos, len(dataset.metainfo['classes']), load_gt, progress)
        for i, (_, probs, gt) in zip(images, pairs):
            fn(i, probs.unsqueeze(0), gt.unsqueeze(0))

    def _filter(self, probs, q):
        return filter_pseudo_labels(probs, q, rule=self.rule, score=self.score,
                                    background_index=self.background_index)

    def _check_classes(self, classes):
        manifest = read_manifest(self.cache_dir) or {}
        cached = manifest.get('classes')
        if cached is not None and tuple(cached) != classes:
            raise ValueError(
                f'the annotator cache {self.cache_dir} was made for the classes\n    {cached}\n'
                f'but the data set has the classes\n    {list(classes)}\nRemake the cache for '
                'this data set (tools/generate_pseudo_labels.py with this config).')

    @staticmethod
    def _reduce_stats(stats):
        state = stats.state_dict()
        for value in state.values():
            if isinstance(value, torch.Tensor):
                torch_dist.all_reduce(value)
        stats.load_state_dict(state)
        return stats

    def _log(self, runner, report, q, classes):
        hub = runner.message_hub
        kept = report.get('filtering', {}).get('kept_ratio')
        coverage = report['holdout_coverage']
        runner.logger.info(
            f'ConformalSAM calibration (alpha={self.alpha}, mode={self.mode}): q = '
            + _shown(q, classes)
            + (f'; kept-pixel ratio {kept:.4f}' if kept is not None else '')
            + (f'; held-out coverage {coverage:.4f} ({self.holdout_folds}-fold, target '
               f'>= {1 - self.alpha:.2f})' if coverage is not None else ''))
        _log_thresholds(hub, 'train/conformal_q', q, classes)
        if kept is not None:
            hub.update_scalar('train/conformal_kept_ratio', kept)
        if coverage is not None:
            hub.update_scalar('train/conformal_holdout_coverage', coverage)

    def _write(self, work_dir, report, q, classes):
        with open(osp.join(work_dir, 'calibration_report.json'), 'w') as f:
            json.dump(report, f, indent=2, default=_json_default)
        plot_calibration(osp.join(work_dir, 'calibration_report.png'), report, q, classes,
                         self.alpha)


def _shown(thresholds, classes):
    """One number when every class has the same threshold (pixel mode), else one per class."""
    values = [float(v) for v in thresholds]
    if len(set(values)) == 1:
        return f'{values[0]:.4f} (every class)'
    return ', '.join(f'{c}: {v:.4f}' for c, v in zip(classes, values))


def _log_thresholds(hub, name, thresholds, classes):
    """``name`` alone when every class has the same threshold (pixel mode: one number in each
    log line instead of K copies), else ``name/<class>`` per class."""
    values = [float(v) for v in thresholds]
    if len(set(values)) == 1:
        hub.update_scalar(name, values[0])
        return
    for c, v in zip(classes, values):
        hub.update_scalar(f'{name}/{c}', v)


def calibration_report_stats(stats, classes):
    """Per class and overall kept ratio (and precision, with ground truth) of FilterStats."""
    def ratio(num, den):
        return None if int(den) == 0 else int(num) / int(den)
    return dict(
        filtering=dict(pixels=stats.pixels, kept_ratio=ratio(stats.kept.sum(),
                                                             stats.annotator.sum()),
                       precision=ratio(stats.correct.sum(), stats.assigned_labeled.sum())),
        classes=[dict(name=c, annotator=int(stats.annotator[k]),
                      kept_ratio=ratio(stats.kept[k], stats.annotator[k]),
                      precision=ratio(stats.correct[k], stats.assigned_labeled[k]))
                 for k, c in enumerate(classes)])


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
