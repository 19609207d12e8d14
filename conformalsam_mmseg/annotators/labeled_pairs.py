"""The annotator's probabilities and the ground truth of labeled images: what calibration reads.

One loop for every calibration from a cache: ``ConformalCalibrationHook`` (on the rank's share
of the labeled images), ``tools/visualize_pseudo_labels.py --alpha`` and the CamVid
benchmark's quality measurements (benchmarks/camvid/quality.py) all read their
(probabilities, ground truth) pairs through :func:`load_pair` / :func:`labeled_pairs`, and
feed calibrators with :func:`calibrate_from_cache`.
"""
import torch

from .base import image_stem
from .cache import topk_to_dense


def ground_truth_loader(num_classes):
    """``LoadCheckedAnnotations`` for ``num_classes`` classes: label values outside
    ``[0, K) U {255}`` fail with the file name."""
    from mmseg.registry import TRANSFORMS
    return TRANSFORMS.build(dict(type='LoadCheckedAnnotations', num_classes=num_classes))


def load_pair(cache, info, num_classes, load_gt):
    """``(probs, gt)`` of one image record (``img_path``, ``seg_map_path``, as a dataset's
    ``get_data_info`` gives it): dense (K, H, W) float32 probabilities from the cache entry
    (classes outside a top-k entry get 0) at the label's size, and the (H, W) int64 labels."""
    gt = load_gt(dict(info, seg_fields=[]))['gt_seg_map']
    h, w = gt.shape
    entry = cache.load(image_stem(info['img_path']), height=h, width=w,
                       img_path=info['img_path'])
    return topk_to_dense(entry.index, entry.prob, num_classes), torch.from_numpy(gt).long()


def labeled_pairs(cache, infos, num_classes, load_gt=None, progress=None):
    """Yield ``(info, probs, gt)`` for each record of ``infos`` (see :func:`load_pair`);
    ``progress`` wraps the iteration (e.g. a tqdm)."""
    load_gt = load_gt or ground_truth_loader(num_classes)
    for info in (progress(infos) if progress else infos):
        probs, gt = load_pair(cache, info, num_classes, load_gt)
        yield info, probs, gt


def calibrate_from_cache(calibrators, cache, infos, num_classes, load_gt=None, progress=None):
    """Stream every labeled image of ``infos`` into each calibrator's ``update(probs, gt)``
    (batch of one); returns ``calibrators``."""
    for _, probs, gt in labeled_pairs(cache, infos, num_classes, load_gt, progress):
        for calibrator in calibrators:
            calibrator.update(probs.unsqueeze(0), gt.unsqueeze(0))
    return calibrators
