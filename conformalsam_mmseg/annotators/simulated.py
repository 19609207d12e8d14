"""A simulated annotator: ground truth degraded by a realistic, seeded error model.

**For benchmarks only.** It reads the ground truth of the image it annotates, so it must never
be used to train a model that is then reported as semi-supervised: it exists so that the
benefit of conformal calibration can be measured where no foundation model is available
(tests, the demo, CPU-only machines).
"""
import math
import zlib

import cv2
import numpy as np
import torch

from .base import BaseAnnotator, image_stem
from .registry import ANNOTATORS


@ANNOTATORS.register_module()
class SimulatedAnnotator(BaseAnnotator):
    """BENCHMARKS ONLY: per-class probabilities derived from the ground truth with errors.

    The errors imitate those of a text-prompted foundation model facing a domain gap, applied
    in this order to the ground-truth map (void pixels, 255, first take the label of the
    nearest labeled pixel, as the model has to say something there too):

    1. **Missed small objects**: each connected component of a class with fewer than
       ``min_area`` x H x W pixels is, with probability ``miss_prob``, relabelled as the class
       that surrounds it most (usually the background).
    2. **Class confusions**: each object (a connected component smaller than 10% of the image),
       and each piece of a larger "stuff" component inside one of ~24 random Voronoi cells, is
       relabelled with probability ``confusion_rate`` to a class drawn from its row of the
       confusion matrix ``confusion`` (K x K, rows summing to 1 off the diagonal). By default
       the matrix is drawn once from ``seed``: every class is confused with 2 others (cat with
       dog, road with sidewalk), with Dirichlet(1) weights, the same for every image.
    3. **Boundary errors**: in a band of ``boundary_width`` x min(H, W) pixels around every
       label boundary, smooth blobs covering a fraction ``boundary_flip`` of the band take the
       class of the other side of the boundary.
    4. **Probabilities**: logits are smooth Gaussian noise per class (std ``noise_std``, on a
       16-pixel grid, bilinearly upsampled), plus a margin on the predicted class chosen so that
       a pixel far from boundaries has probability about ``confidence`` on it
       (margin = logit(confidence) + log(K - 1), halved inside the boundary band). On a wrong
       pixel the true class gets ``runner_up`` x margin, so it is often the second guess, and
       **over-confidence** multiplies the wrong pixel's logits by ``1 + overconfidence`` (a
       temperature 1 / (1 + overconfidence)), making wrong labels as confident as right ones.
       ``probs = softmax(logits)`` over the K classes (each pixel sums to 1).

    One knob, ``gap`` in [0, 1] (0: the ground truth with a little noise, 1: a severe domain
    gap), sets every error parameter left as None:

    ======================  ================  ====================
    parameter               from gap g        g = 0.5
    ======================  ================  ====================
    ``min_area``            0.01 g            0.5% of the image
    ``miss_prob``           g                 0.5
    ``confusion_rate``      0.3 g             0.15
    ``boundary_width``      0.03 g            1.5% of min(H, W)
    ``boundary_flip``       0.6 g             0.3
    ``noise_std``           0.5 + 1.5 g       1.25
    ``overconfidence``      2 g               1.0
    ======================  ================  ====================

    Randomness: the confusion matrix comes from ``seed``; the errors of an image from
    ``(seed, crc32 of its file stem)``, so an image gets the same output whatever the order,
    sharding or number of processes that annotate it.

    Args:
        gap: the severity knob above, in [0, 1].
        seed: the base seed.
        background_index: the background class (0 on VOC), or None. Its components are never
            "missed" (they are what objects are missed into).
        confusion: optional (K, K) confusion matrix (the diagonal is ignored).
        confidence: probability of the predicted class on a pixel far from any boundary.
        runner_up: the true class's logit on a wrong pixel, as a fraction of the margin.
        others: see the table.
    """
    needs_ground_truth = True

    def __init__(self, gap=0.5, seed=0, *, background_index=0, confusion=None,
                 min_area=None, miss_prob=None, confusion_rate=None, boundary_width=None,
                 boundary_flip=None, noise_std=None, overconfidence=None, confidence=0.9,
                 runner_up=0.75, noise_cell=16, ignore_index=255):
        if not 0 <= gap <= 1:
            raise ValueError(f'gap must be in [0, 1], got {gap}')
        if not 0 < confidence < 1:
            raise ValueError(f'confidence must be in (0, 1), got {confidence}')
        g = float(gap)
        self.gap = g
        self.seed = int(seed)
        self.background_index = background_index
        self.confusion = None if confusion is None else np.asarray(confusion, np.float64)
        self.min_area = 0.01 * g if min_area is None else float(min_area)
        self.miss_prob = g if miss_prob is None else float(miss_prob)
        self.confusion_rate = 0.3 * g if confusion_rate is None else float(confusion_rate)
        self.boundary_width = 0.03 * g if boundary_width is None else float(boundary_width)
        self.boundary_flip = 0.6 * g if boundary_flip is None else float(boundary_flip)
        self.noise_std = 0.5 + 1.5 * g if noise_std is None else float(noise_std)
        self.overconfidence = 2 * g if overconfidence is None else float(overconfidence)
        self.confidence = float(confidence)
        self.runner_up = float(runner_up)
        self.noise_cell = int(noise_cell)
        self.ignore_index = ignore_index
        self._confusion_cache = {}

    def __repr__(self):
        return (f'{self.name}(gap={self.gap}, seed={self.seed}, min_area={self.min_area:g}, '
                f'miss_prob={self.miss_prob:g}, confusion_rate={self.confusion_rate:g}, '
                f'boundary_width={self.boundary_width:g}, boundary_flip={self.boundary_flip:g}, '
                f'noise_std={self.noise_std:g}, overconfidence={self.overconfidence:g})')

    # --- the interface ------------------------------------------------------------------
    def annotate(self, image, class_names, *, img_path=None, gt_seg_map=None):
        image = self.check_image(image)
        class_names = self.check_class_names(class_names)
        if gt_seg_map is None:
            raise ValueError(
                'SimulatedAnnotator derives its output from the ground truth: pass gt_seg_map '
                '(with tools/generate_pseudo_labels.py, run it on a split whose dataset has '
                'label files)')
        gt = np.asarray(gt_seg_map)
        if gt.shape != image.shape[:2]:
            raise ValueError(f'gt_seg_map of shape {gt.shape} does not match the image '
                             f'{image.shape[:2]}' + (f' ({img_path})' if img_path else ''))
        probs = self.simulate(gt, len(class_names), self._image_rng(img_path, gt))
        return self.check_output(probs, image, class_names)

    def simulate(self, gt, num_classes, rng):
        """Probabilities (K, H, W) for the label map ``gt`` using the generator ``rng``.

        Returns a float32 tensor; :meth:`predicted_labels` exposes the degraded label map.
        """
        logits, _ = self._simulate(gt, num_classes, rng)
        return torch.softmax(torch.from_numpy(logits), dim=0)

    def predicted_labels(self, gt, num_classes, img_path=None):
        """The degraded label map (before noise), for inspection and tests."""
        return self._simulate(gt, num_classes, self._image_rng(img_path, np.asarray(gt)))[1]

    # --- the error model ----------------------------------------------------------------
    def _image_rng(self, img_path, gt):
        key = image_stem(img_path).encode() if img_path is not None else gt.tobytes()
        return np.random.default_rng([self.seed, zlib.crc32(key)])

    def _simulate(self, gt, num_classes, rng):
        gt = np.asarray(gt)
        if gt.ndim != 2:
            raise ValueError(f'gt_seg_map must be (H, W), got shape {gt.shape}')
        valid = gt != self.ignore_index
        if (gt[valid] >= num_classes).any() or (gt[valid] < 0).any():
            bad = np.unique(gt[valid & ((gt >= num_classes) | (gt < 0))])
            raise ValueError(f'gt_seg_map holds values {bad[:10].tolist()} outside the '
                             f'{num_classes} classes (and {self.ignore_index} = ignore)')
        h, w = gt.shape
        truth = _fill_void(gt.astype(np.int32), valid, num_classes)
        pred = truth.copy()
        self._miss_small_objects(pred, rng, num_classes)
        self._confuse(pred, rng, num_classes)
        band = self._boundary_errors(pred, rng)

        margin = math.log(self.confidence / (1 - self.confidence)) + math.log(
            max(num_classes - 1, 1))
        logits = _smooth_noise(rng, num_classes, h, w, self.noise_cell) * self.noise_std
        boost = np.full((h, w), margin, np.float32)
        boost[band] *= 0.5
        flat = logits.reshape(num_classes, -1)
        pix = np.arange(h * w)
        flat[pred.reshape(-1), pix] += boost.reshape(-1)
        wrong = (pred != truth) & valid
        wrong_idx = np.flatnonzero(wrong)
        flat[truth.reshape(-1)[wrong_idx], wrong_idx] += self.runner_up * margin
        if self.overconfidence:
            flat[:, wrong_idx] *= 1 + self.overconfidence
        return logits, pred

    def _miss_small_objects(self, pred, rng, num_classes):
        min_px = self.min_area * pred.size
        if min_px <= 0 or self.miss_prob <= 0:
            return
        kernel = np.ones((3, 3), np.uint8)
        for cls in np.unique(pred):
            if cls == self.background_index:
                continue
            count, comp, stats, _ = cv2.connectedComponentsWithStats(
                (pred == cls).astype(np.uint8), connectivity=8)
            for i in range(1, count):
                if stats[i, cv2.CC_STAT_AREA] >= min_px or rng.random() >= self.miss_prob:
                    continue
                mask = (comp == i).astype(np.uint8)
                ring = cv2.dilate(mask, kernel, iterations=2).astype(bool) & (mask == 0)
                around = pred[ring]
                around = around[around != cls]
                if around.size:
                    new = np.bincount(around).argmax()
                elif self.background_index is not None:
                    new = self.background_index
                else:
                    continue
                pred[mask.astype(bool)] = new

    def _confusion_matrix(self, num_classes):
        if self.confusion is not None:
            c = self.confusion
            if c.shape != (num_classes, num_classes):
                raise ValueError(f'confusion must be ({num_classes}, {num_classes}), got '
                                 f'{c.shape}')
            c = c.copy()
            np.fill_diagonal(c, 0)
            sums = c.sum(1, keepdims=True)
            if (sums <= 0).any():
                raise ValueError('every row of confusion needs a positive off-diagonal entry')
            return c / sums
        if num_classes not in self._confusion_cache:
            rng = np.random.default_rng([self.seed, num_classes, 0xC0F])
            c = np.zeros((num_classes, num_classes))
            for i in range(num_classes):
                others = [j for j in range(num_classes) if j != i]
                if not others:
                    continue
                picks = rng.choice(others, size=min(2, len(others)), replace=False)
                c[i, picks] = rng.dirichlet(np.ones(len(picks)))
            self._confusion_cache[num_classes] = c
        return self._confusion_cache[num_classes]

    def _confuse(self, pred, rng, num_classes):
        if self.confusion_rate <= 0 or num_classes < 2:
            return
        conf = self._confusion_matrix(num_classes)
        h, w = pred.shape
        cells = _voronoi_cells(rng, h, w, 24)
        stuff_px = 0.1 * pred.size
        source = pred.copy()
        for cls in np.unique(source):
            count, comp, stats, _ = cv2.connectedComponentsWithStats(
                (source == cls).astype(np.uint8), connectivity=8)
            for i in range(1, count):
                mask = comp == i
                if stats[i, cv2.CC_STAT_AREA] < stuff_px:
                    pieces = [mask]
                else:
                    pieces = [mask & (cells == c) for c in np.unique(cells[mask])]
                for piece in pieces:
                    if rng.random() < self.confusion_rate:
                        pred[piece] = rng.choice(num_classes, p=conf[cls])

    def _boundary_errors(self, pred, rng):
        """Flip blobs of the boundary band to the other side's class; returns the band."""
        h, w = pred.shape
        radius = int(round(self.boundary_width * min(h, w)))
        if radius < 1:
            return np.zeros_like(pred, dtype=bool)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        labels = pred.astype(np.uint16) if pred.max() < 65535 else pred.astype(np.float32)
        high = cv2.dilate(labels, kernel).astype(np.int32)
        low = cv2.erode(labels, kernel).astype(np.int32)
        band = high != low
        if self.boundary_flip > 0 and band.any():
            field = _smooth_noise(rng, 1, h, w, max(2, radius))[0]
            cut = np.quantile(field[band], 1 - min(self.boundary_flip, 1.0))
            flip = band & (field > cut)
            other = np.where(high != pred, high, low)
            pred[flip] = other[flip]
        return band


def _fill_void(labels, valid, num_classes):
    """Void pixels take the label of the nearest labeled pixel (all void: class 0)."""
    if valid.all():
        return labels
    if not valid.any():
        return np.zeros_like(labels)
    _, nearest = cv2.distanceTransformWithLabels(
        (~valid).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    # nearest[i] = index (1-based) of the nearest zero pixel, i.e. the nearest labeled one
    ys, xs = np.nonzero(valid)
    lut = np.zeros(nearest.max() + 1, np.int32)
    lut[nearest[ys, xs]] = labels[ys, xs]
    out = labels.copy()
    out[~valid] = lut[nearest[~valid]]
    return out


def _smooth_noise(rng, channels, h, w, cell):
    """(channels, h, w) float32 Gaussian noise, smooth at the scale of ``cell`` pixels: a
    standard-normal grid every ``cell`` pixels, bilinearly interpolated."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = torch.from_numpy(rng.standard_normal((1, channels, gh, gw)).astype(np.float32))
    up = torch.nn.functional.interpolate(
        grid, size=(h, w), mode='bilinear', align_corners=True)[0]
    return up.numpy()


def _voronoi_cells(rng, h, w, num_cells):
    """(h, w) int32 cell index of the nearest of ``num_cells`` random seed points."""
    seeds = np.ones((h, w), np.uint8)
    ys = rng.integers(0, h, num_cells)
    xs = rng.integers(0, w, num_cells)
    seeds[ys, xs] = 0
    _, cells = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3,
                                               labelType=cv2.DIST_LABEL_CCOMP)
    return cells.astype(np.int32)
