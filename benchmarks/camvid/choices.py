"""The two choices the CamVid benchmark makes before its rows run, neither on val.

- ``alpha``: the smallest alpha of ``ALPHA_GRID`` at which the paper's pixel-mode filter,
  calibrated on the split's labeled images, removes at least ``MIN_REMOVED`` of those images'
  pixels ("the smallest alpha that filters"); read from the labeled images alone.
- ``risk_target``: the smallest target of ``RISK_TARGET_GRID`` at which the risk-controlled
  filter (false-label rate, pixel mode, delta 0.1; the training default), calibrated on the
  split's labeled images, certifies a threshold: with few labeled images Learn-then-Test
  certifies nothing at a small target, and a row that keeps no pseudo-label only repeats the
  supervised row; read from the labeled images alone.
- ``tau``: the fixed confidence threshold of ``training.TAU_CANDIDATES`` whose Stage I run
  (seed 0) has the best mIoU on the selection set (the 0001TP frames of CamVid test); ties go
  to the smaller threshold.
"""
import math

import torch

from conformalsam_mmseg.conformal import (ConformalCalibrator, RiskCalibrator,
                                          filter_pseudo_labels)

ALPHA_GRID = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
MIN_REMOVED = 0.01
RISK_TARGET_GRID = (0.05, 0.1, 0.15, 0.2)
RISK = dict(risk='false_label_rate', delta=0.1, mode='pixel')


def choose_alpha(source, labeled, num_classes, grid=ALPHA_GRID, min_removed=MIN_REMOVED):
    """``source(stem) -> (probs (K, H, W), gt (H, W))``. Returns ``dict(alpha, table)``, the
    table listing (alpha, q, kept ratio on the labeled images) for every alpha of ``grid``;
    alpha is None when no alpha of the grid filters."""
    cals = [ConformalCalibrator(num_classes, alpha=a, mode='pixel', check_probs=False)
            for a in grid]
    for stem in labeled:
        probs, gt = source(stem)
        for cal in cals:
            cal.update(probs.unsqueeze(0), gt.unsqueeze(0))
    qs = [cal.thresholds() for cal in cals]
    kept = torch.zeros(len(grid), dtype=torch.float64)
    pixels = 0
    for stem in labeled:
        probs, _ = source(stem)
        pixels += probs.shape[1] * probs.shape[2]
        for i, q in enumerate(qs):
            labels = filter_pseudo_labels(probs.unsqueeze(0), q, rule='foreground_first',
                                          background_index=None)
            kept[i] += float((labels != 255).sum())
    table = [dict(alpha=a, q=float(q[0]), kept=float(k / pixels))
             for a, q, k in zip(grid, qs, kept)]
    chosen = next((row['alpha'] for row in table if row['kept'] <= 1 - min_removed), None)
    return dict(alpha=chosen, table=table, min_removed=min_removed)


def choose_risk_target(source, labeled, num_classes, grid=RISK_TARGET_GRID):
    """``source(stem) -> (probs (K, H, W), gt (H, W))``. Returns ``dict(risk_target, table)``,
    the table listing (target, threshold t or None for keep nothing, labeled images needed)
    for every target of ``grid``; risk_target is None when no target certifies."""
    seen = RiskCalibrator(num_classes, grid[0], **RISK)
    for stem in labeled:
        probs, gt = source(stem)
        seen.update(probs.unsqueeze(0), gt.unsqueeze(0))
    table = []
    for target in grid:
        cal = RiskCalibrator(num_classes, target, **RISK)
        cal.histogram = seen.histogram   # the procedures only read it
        result = cal.calibrate(warn=False)
        t = float(result.thresholds[0])
        pooled = result.groups[0]
        table.append(dict(target=target, threshold=t if math.isfinite(t) else None,
                          n=pooled.n, n_needed=pooled.n_needed))
    chosen = next((row['target'] for row in table if row['threshold'] is not None), None)
    return dict(risk_target=chosen, table=table, **RISK)


def choose_tau(selection_miou):
    """``{tau: selection mIoU}`` -> the best tau (ties: the smaller)."""
    return max(sorted(selection_miou), key=lambda t: selection_miou[t])
