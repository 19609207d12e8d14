"""The calibration procedures and score stores on their own, against hand computations."""
import functools
import math

import torch

from conformalsam_mmseg.conformal import (ClassWiseCalibration, ImageWiseCalibration,
                                          PixelWiseCalibration, ScoreHistogram, ScoreList,
                                          conformal_quantile)

WIDTH = 2.0 ** -16


def _grouped(seed, n=500, groups=3):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(n, generator=generator) ** 3
    group = torch.randint(0, groups, (n,), generator=generator)
    valid = torch.rand(n, generator=generator) > 0.2
    return scores, group, valid


def _by_hand(scores, alpha):
    r = math.ceil((scores.numel() + 1) * (1 - alpha))
    return math.inf if r > scores.numel() else float(torch.sort(scores).values[r - 1])


def test_stores_agree_with_the_definition():
    scores, group, valid = _grouped(0)
    alphas = [0.05, 0.1, 0.3]
    exact, hist = ScoreList(3), ScoreHistogram(3)
    for part in torch.split(torch.arange(scores.numel()), 70):   # streamed in pieces
        exact.add(scores[part], group[part], valid[part])
        hist.add(scores[part], group[part], valid[part])
    expected = [_by_hand(scores[valid & (group == g)], a) for g, a in enumerate(alphas)]
    sizes = [int((valid & (group == g)).sum()) for g in range(3)]
    assert exact.sizes().tolist() == sizes and hist.sizes().tolist() == sizes
    assert exact.quantiles(alphas).tolist() == expected
    q = hist.quantiles(alphas)
    assert (q >= torch.tensor(expected)).all() and (q <= torch.tensor(expected) + WIDTH).all()


def test_exact_store_keeps_each_group_in_arrival_order():
    store = ScoreList(2)
    store.add(torch.tensor([0.5, 0.1, 0.4, 0.2]), torch.tensor([1, 0, 1, 0]))
    store.add(torch.tensor([0.3, 0.9]), torch.tensor([1, 1]), torch.tensor([True, False]))
    first, second = store.tensors()
    assert torch.equal(first, torch.tensor([0.1, 0.2]))
    assert torch.equal(second, torch.tensor([0.5, 0.4, 0.3]))


def test_procedures_group_the_pixels_as_their_mode_says():
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(4, 6, 7, generator=generator)
    labels = torch.randint(0, 3, (4, 6, 7), generator=generator)
    valid = torch.rand(4, 6, 7, generator=generator) > 0.1
    pixel = PixelWiseCalibration(3, [0.1], ScoreList)
    classes = ClassWiseCalibration(3, [0.1, 0.2, 0.3], ScoreList)
    images = ImageWiseCalibration(3, 0.2, ScoreList, aggregation='median')
    for procedure in (pixel, classes, images):
        procedure.add(scores, labels, valid)
    assert pixel.thresholds().tolist() == [_by_hand(scores[valid], 0.1)] * 3
    assert classes.thresholds().tolist() == [
        _by_hand(scores[valid & (labels == k)], a) for k, a in enumerate([0.1, 0.2, 0.3])]
    per_image = [conformal_quantile(scores[i][valid[i]], 0.2) for i in range(4)]
    assert images.group_thresholds().tolist() == per_image
    assert images.thresholds().tolist() == [sorted(per_image)[1]] * 3   # lower median
    assert images.group_counts().tolist() == valid.sum((1, 2)).tolist()


def test_image_procedure_with_histograms_is_within_one_bin():
    generator = torch.Generator().manual_seed(2)
    scores = torch.rand(5, 20, 20, generator=generator)
    labels = torch.zeros(5, 20, 20, dtype=torch.long)
    procedure = ImageWiseCalibration(2, 0.05, functools.partial(ScoreHistogram, num_bins=2 ** 16))
    procedure.add(scores, labels, None)
    exact = torch.tensor([conformal_quantile(s, 0.05) for s in scores])
    q = procedure.group_thresholds()
    assert (q >= exact).all() and (q <= exact + WIDTH).all()
