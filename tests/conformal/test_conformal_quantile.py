"""The conformal quantile against its definition: rank, exact value, histogram bounds."""
import math

import pytest
import torch

from conformalsam_mmseg.conformal import (conformal_quantile, conformal_rank,
                                          histogram_bin_index,
                                          histogram_quantile,
                                          min_calibration_size)

NUM_BINS = 2 ** 16
WIDTH = 1 / NUM_BINS


def test_rank_by_hand():
    # r = ceil((n + 1)(1 - alpha))
    assert conformal_rank(5, 0.2) == 5  # ceil(4.8)
    assert conformal_rank(5, 0.4) == 4  # ceil(3.6)
    assert conformal_rank(5, 0.5) == 3  # ceil(3.0), an exact integer stays
    assert conformal_rank(19, 0.05) == 19
    assert conformal_rank(1000, 0.05) == 951  # ceil(950.95)


def test_rank_reads_alpha_as_a_decimal():
    # 150 * (1 - 0.18) is 123.00000000000001 in floats: a float rank would be 124, not 123
    assert math.ceil(150 * (1 - 0.18)) == 124
    assert conformal_rank(149, 0.18) == 123
    assert conformal_quantile(torch.arange(149.), 0.18) == 122.0


def test_min_calibration_size():
    assert min_calibration_size(0.05) == 19
    assert min_calibration_size(0.1) == 9
    assert min_calibration_size(0.01) == 99
    for alpha in (0.05, 0.1, 0.01, 0.3):
        n = min_calibration_size(alpha)
        assert conformal_rank(n, alpha) <= n          # finite q from n scores
        assert conformal_rank(n - 1, alpha) > n - 1   # +inf from one fewer


def test_exact_quantile_by_hand():
    scores = torch.tensor([0.3, 0.1, 0.9, 0.5, 0.7])
    assert conformal_quantile(scores, 0.2) == pytest.approx(0.9)   # 5th smallest
    assert conformal_quantile(scores, 0.4) == pytest.approx(0.7)   # 4th
    assert conformal_quantile(scores, 0.5) == pytest.approx(0.5)   # 3rd
    assert conformal_quantile(scores.view(1, 5, 1), 0.5) == pytest.approx(0.5)  # any shape


def test_too_little_data_gives_infinity():
    scores = torch.rand(18)
    assert conformal_quantile(scores, 0.05) == math.inf       # needs n >= 19
    assert conformal_quantile(torch.rand(19), 0.05) < math.inf
    assert conformal_quantile(torch.empty(0), 0.05) == math.inf
    assert conformal_quantile(torch.tensor([0.2, 0.4, 0.3, 0.1, 0.5]), 0.1) == math.inf  # r=6
    counts = torch.zeros(2, NUM_BINS + 2, dtype=torch.int64)
    counts[0, 5] = 18
    counts[1, 5] = 19
    q = histogram_quantile(counts, 0.05)
    assert q[0] == math.inf and q[1] == 5 / NUM_BINS


def test_exact_quantile_is_sorted_element():
    generator = torch.Generator().manual_seed(1)
    for n in (1, 7, 19, 100, 1001):
        scores = torch.rand(n, generator=generator)
        for alpha in (0.01, 0.05, 0.1, 0.5):
            r = conformal_rank(n, alpha)
            expected = math.inf if r > n else float(torch.sort(scores).values[r - 1])
            assert conformal_quantile(scores, alpha) == expected


def test_bin_index_edges():
    s = torch.tensor([-0.5, 0.0, 2.0 ** -17, WIDTH, float(torch.nextafter(
        torch.tensor(WIDTH), torch.tensor(1.0))), 0.5, 1.0 - 2.0 ** -24, 1.0,
        float(torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))), 7.0])
    # right-closed bins: (i - 1) / nb < s <= i / nb -> i; s <= 0 -> 0; s > 1 -> nb + 1
    assert histogram_bin_index(s, NUM_BINS).tolist() == [
        0, 0, 1, 1, 2, NUM_BINS // 2, NUM_BINS, NUM_BINS, NUM_BINS + 1, NUM_BINS + 1]


def _histogram_q(scores, alpha, num_bins=NUM_BINS):
    counts = torch.bincount(histogram_bin_index(scores, num_bins), minlength=num_bins + 2)
    over = scores[scores > 1]
    top = torch.tensor([float(over.max()) if over.numel() else -math.inf],
                       dtype=torch.float64)
    return float(histogram_quantile(counts.unsqueeze(0), alpha, top)[0])


def test_histogram_is_conservative_and_within_one_bin():
    """Over many random cases, exact <= histogram <= exact + one bin width."""
    generator = torch.Generator().manual_seed(0)
    for case in range(300):
        n = int(torch.randint(1, 3000, (1,), generator=generator))
        alpha = float(torch.empty(1).uniform_(0.002, 0.5, generator=generator))
        kind = case % 4
        if kind == 0:    # continuous scores
            scores = torch.rand(n, generator=generator)
        elif kind == 1:  # scores on bin edges, where rounding would bite
            scores = torch.randint(0, NUM_BINS + 1, (n,), generator=generator) / NUM_BINS
        elif kind == 2:  # heavy ties and the ends of [0, 1]
            scores = torch.tensor([0.0, 1.0, 0.25, 0.75])[
                torch.randint(0, 4, (n,), generator=generator)]
        else:            # 1 - p of softmax probabilities (the LAC scores themselves)
            probs = torch.softmax(3 * torch.randn(n, 21, generator=generator), 1)
            scores = 1 - probs[:, 0]
        scores = scores.float()
        r = conformal_rank(n, alpha)
        exact = math.inf if r > n else float(torch.sort(scores).values[r - 1])
        hist = _histogram_q(scores, alpha)
        if math.isinf(exact):
            assert math.isinf(hist)
        else:
            assert exact <= hist <= exact + WIDTH, (case, n, alpha, exact, hist)


def test_histogram_scores_outside_unit_interval_stay_conservative():
    # un-normalised annotators (check_probs=False) can give scores < 0 or > 1
    scores = torch.tensor([-0.4, -0.1, 0.2, 0.5, 1.25, 1.5, 2.0, 3.0, 3.5, 4.0])
    for alpha in (0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
        exact = float(torch.sort(scores).values[conformal_rank(10, alpha) - 1])
        hist = _histogram_q(scores, alpha)
        assert hist >= exact
        if exact > 1:   # the overflow bin reports the largest score seen: exact only at the top
            assert hist == 4.0
        elif exact <= 0:
            assert hist == 0.0


def test_histogram_quantile_per_group_alpha():
    counts = torch.zeros(2, 6, dtype=torch.int64)   # 4 bins
    counts[:, 1:5] = torch.tensor([[5, 5, 5, 5], [5, 5, 5, 5]])
    # n = 20: alpha 0.5 -> r = 11 -> bin 3 (edge 0.75); alpha 0.25 -> r = 16 -> bin 4 (1.0)
    q = histogram_quantile(counts, [0.5, 0.25])
    assert q.tolist() == [0.75, 1.0]
