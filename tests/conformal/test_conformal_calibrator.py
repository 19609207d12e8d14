"""ConformalCalibrator: modes, methods, streaming, state and JSON, against hand computations."""
import json
import math

import pytest
import torch

from conformalsam_mmseg.conformal import ConformalCalibrator, conformal_quantile

WIDTH = 2.0 ** -16


def _data(seed, images=3, classes=4, height=12, width=15, ignore_rows=2):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(images, classes, height, width, generator=generator), 1)
    labels = torch.randint(0, classes, (images, height, width), generator=generator)
    labels[:, :ignore_rows] = 255
    return probs, labels


def _true_scores(probs, labels):
    """1 - p_y of the labeled pixels, and their classes, computed independently."""
    keep = labels != 255
    p_y = probs.permute(0, 2, 3, 1)[keep, labels[keep]]
    return 1 - p_y, labels[keep]


def test_pixel_mode_exact_by_hand():
    probs, labels = _data(0)
    scores, _ = _true_scores(probs, labels)
    calibrator = ConformalCalibrator(4, alpha=0.1, method='exact')
    calibrator.update(probs, labels)
    n = scores.numel()
    r = math.ceil((n + 1) * 0.9)
    expected = float(torch.sort(scores).values[r - 1])
    assert calibrator.group_counts().tolist() == [n]
    assert calibrator.thresholds().tolist() == [expected] * 4


def test_class_mode_exact_by_hand():
    probs, labels = _data(1)
    scores, classes = _true_scores(probs, labels)
    alphas = [0.1, 0.2, 0.05, 0.3]
    calibrator = ConformalCalibrator(4, alpha=alphas, mode='class', method='exact')
    calibrator.update(probs, labels)
    for k, alpha in enumerate(alphas):
        own = scores[classes == k]
        r = math.ceil((own.numel() + 1) * (1 - alpha))
        assert calibrator.thresholds()[k] == float(torch.sort(own).values[r - 1])
    assert calibrator.group_counts().tolist() == [int((classes == k).sum()) for k in range(4)]


def test_image_mode_aggregations_by_hand():
    probs, labels = _data(2, images=5)
    labels[4] = 255                 # an image without labeled pixels is ignored
    labels[3] = 255
    labels[3, 2, :3] = 1            # 3 labeled pixels: q_3 = +inf at alpha 0.1 (needs 9)
    per_image = []
    for b in range(4):
        scores, _ = _true_scores(probs[b:b + 1], labels[b:b + 1])
        per_image.append(conformal_quantile(scores, 0.1))
    assert math.isinf(per_image[3]) and all(math.isfinite(q) for q in per_image[:3])
    finite = sorted(per_image[:3])
    expected = dict(mean=math.fsum(finite) / 3, median=finite[1],
                    conformal=math.inf)  # 4 images are too few for a finite alpha=0.1 rank
    for aggregation, value in expected.items():
        calibrator = ConformalCalibrator(4, alpha=0.1, mode='image', method='exact',
                                         image_aggregation=aggregation)
        calibrator.update(probs, labels)
        assert calibrator.group_thresholds()[:4].tolist() == per_image
        assert calibrator.group_counts().tolist()[3:] == [3, 0]
        assert calibrator.thresholds().tolist() == [value] * 4


def test_image_mode_conformal_aggregation():
    probs, labels = _data(3, images=20, ignore_rows=0)
    calibrator = ConformalCalibrator(4, alpha=0.1, mode='image', method='exact',
                                     image_aggregation='conformal')
    calibrator.update(probs, labels)
    per_image = calibrator.group_thresholds()
    # r = ceil(21 * 0.9) = 19: the 19th smallest of the 20 per-image thresholds
    assert calibrator.thresholds()[0] == torch.sort(per_image).values[18]


@pytest.mark.parametrize('mode', ['pixel', 'class', 'image'])
def test_histogram_within_one_bin_of_exact(mode):
    for seed in range(5):
        probs, labels = _data(10 + seed, images=4, height=40, width=50)
        hist = ConformalCalibrator(4, alpha=0.05, mode=mode)
        exact = ConformalCalibrator(4, alpha=0.05, mode=mode, method='exact')
        hist.update(probs, labels)
        exact.update(probs, labels)
        q_hist, q_exact = hist.group_thresholds(), exact.group_thresholds()
        assert (q_hist >= q_exact).all()
        assert (q_hist <= q_exact + WIDTH).all()
        if mode == 'image':   # the mean of per-image thresholds keeps both bounds
            assert exact.thresholds()[0] <= hist.thresholds()[0]
            assert hist.thresholds()[0] <= exact.thresholds()[0] + WIDTH + 1e-12


@pytest.mark.parametrize('mode,method', [('pixel', 'histogram'), ('class', 'histogram'),
                                         ('class', 'exact'), ('image', 'histogram')])
def test_streaming_many_chunks_equals_one_update(mode, method):
    probs, labels = _data(4, images=6, height=30, width=20)
    whole = ConformalCalibrator(4, alpha=0.1, mode=mode, method=method)
    whole.update(probs, labels)
    chunked = ConformalCalibrator(4, alpha=0.1, mode=mode, method=method)
    for b in range(6):   # one image at a time, unbatched (K, H, W) / (H, W)
        chunked.update(probs[b], labels[b])
    assert torch.equal(whole.group_counts(), chunked.group_counts())
    assert torch.equal(whole.thresholds(), chunked.thresholds())
    if method == 'histogram' and mode != 'image':
        assert torch.equal(whole._counts, chunked._counts)


def test_precomputed_scores_equal_probabilities():
    probs, labels = _data(5)
    from_probs = ConformalCalibrator(4, mode='class', alpha=0.2)
    from_probs.update(probs, labels)
    from_maps = ConformalCalibrator(4, mode='class', alpha=0.2)
    from_maps.update(1 - probs, labels, is_scores=True)
    true_class = 1 - probs.gather(1, labels.clamp(max=3).unsqueeze(1)).squeeze(1)
    from_true = ConformalCalibrator(4, mode='class', alpha=0.2)
    from_true.update(true_class, labels, is_scores=True)
    assert torch.equal(from_probs.thresholds(), from_maps.thresholds())
    assert torch.equal(from_probs.thresholds(), from_true.thresholds())


def test_ignored_pixels_are_skipped():
    probs, labels = _data(6, ignore_rows=0)
    partial = labels.clone()
    partial[:, :3] = 255
    a = ConformalCalibrator(4, alpha=0.1, method='exact')
    a.update(probs, partial)
    b = ConformalCalibrator(4, alpha=0.1, method='exact')
    b.update(probs[:, :, 3:], labels[:, 3:])
    assert a.group_counts().tolist() == [3 * 9 * 15]
    assert torch.equal(a.thresholds(), b.thresholds())


def test_class_without_pixels_gets_infinity():
    probs, labels = _data(7)
    labels[labels == 2] = 0
    calibrator = ConformalCalibrator(4, alpha=0.1, mode='class')
    calibrator.update(probs, labels)
    q = calibrator.thresholds()
    assert math.isinf(q[2]) and torch.isfinite(q[[0, 1, 3]]).all()


def test_unnormalised_scores_with_check_off():
    # SEEM-like scores: do not sum to 1, may exceed 1 -> LAC scores below 0
    probs, labels = _data(8)
    raw = probs * 1.7
    calibrator = ConformalCalibrator(4, alpha=0.1, check_probs=False)
    calibrator.update(raw, labels)
    exact = ConformalCalibrator(4, alpha=0.1, check_probs=False, method='exact')
    exact.update(raw, labels)
    assert exact.thresholds()[0] <= calibrator.thresholds()[0]
    assert calibrator.thresholds()[0] <= max(exact.thresholds()[0], 0.0) + WIDTH


@pytest.mark.parametrize('mode,method', [('pixel', 'histogram'), ('class', 'histogram'),
                                         ('class', 'exact'), ('image', 'histogram'),
                                         ('image', 'exact')])
def test_state_dict_and_json_round_trip(tmp_path, mode, method):
    probs, labels = _data(9, images=4)
    labels[0] = 255
    original = ConformalCalibrator(4, alpha=0.1, mode=mode, method=method)
    original.update(probs[:2], labels[:2])
    # a checkpoint: torch.save / weights_only load
    torch.save(original.state_dict(), tmp_path / 'state.pth')
    resumed = ConformalCalibrator(4, alpha=0.1, mode=mode, method=method)
    resumed.load_state_dict(torch.load(tmp_path / 'state.pth', weights_only=True))
    original.save_json(tmp_path / 'calibration.json')
    from_json = ConformalCalibrator.load_json(tmp_path / 'calibration.json')
    # resuming continues exactly where it stopped
    for calibrator in (original, resumed, from_json):
        calibrator.update(probs[2:], labels[2:])
    assert torch.equal(resumed.thresholds(), original.thresholds())
    assert torch.equal(from_json.thresholds(), original.thresholds())
    assert torch.equal(from_json.group_counts(), original.group_counts())
    assert from_json.config() == original.config()
    data = json.loads((tmp_path / 'calibration.json').read_text())
    assert data['config']['alpha'] == 0.1 and data['config']['score'] == 'lac'
    assert len(data['groups']) == original.num_groups - (2 if mode == 'image' else 0)


def test_json_reports_infinite_q(tmp_path):
    calibrator = ConformalCalibrator(3, alpha=0.05, mode='class')
    probs = torch.full((1, 3, 2, 5), 1 / 3)
    calibrator.update(probs, torch.zeros(1, 2, 5, dtype=torch.long))   # n = 10 < 19
    calibrator.save_json(tmp_path / 'c.json')
    data = json.loads((tmp_path / 'c.json').read_text())
    assert data['groups'][0] == dict(name='class 0', n=10, alpha=0.05, q=None, q_infinite=True,
                                     n_min=19)
    assert data['thresholds'] == [None, None, None]
    assert math.isinf(ConformalCalibrator.load_json(tmp_path / 'c.json').thresholds()[0])


def test_load_state_keeps_own_alpha_and_checks_structure():
    probs, labels = _data(11, images=4, height=30, width=30)
    strict = ConformalCalibrator(4, alpha=0.01)
    strict.update(probs, labels)
    loose = ConformalCalibrator(4, alpha=0.2)
    loose.load_state_dict(strict.state_dict())
    assert loose.thresholds()[0] < strict.thresholds()[0]
    assert ConformalCalibrator.from_state_dict(strict.state_dict()).alpha == 0.01
    with pytest.raises(ValueError, match="mode='class'"):
        ConformalCalibrator(4, mode='class').load_state_dict(strict.state_dict())
    with pytest.raises(ValueError, match='not a ConformalCalibrator state'):
        strict.load_state_dict({'counts': None})


def test_all_reduce_without_distributed_is_a_copy():
    probs, labels = _data(12)
    calibrator = ConformalCalibrator(4)
    calibrator.update(probs, labels)
    merged = calibrator.all_reduce()
    assert merged is not calibrator
    assert torch.equal(merged.thresholds(), calibrator.thresholds())
    merged.update(probs, labels)   # the original is untouched
    assert int(merged.group_counts()[0]) == 2 * int(calibrator.group_counts()[0])


def test_reset_forgets():
    probs, labels = _data(13)
    calibrator = ConformalCalibrator(4, mode='image')
    calibrator.update(probs, labels)
    calibrator.reset()
    assert calibrator.num_groups == 0
    with pytest.raises(ValueError, match='empty calibration set'):
        calibrator.thresholds()


def test_inputs_with_gradients_are_neither_tracked_nor_modified():
    probs, labels = _data(14)
    logits = probs.log().requires_grad_()
    calibrator = ConformalCalibrator(4, alpha=0.1, mode='class', method='exact')
    calibrator.update(logits.softmax(1), labels)
    assert not any(s.requires_grad for s in calibrator.state_dict()['exact_scores'])
    scores = 1 - probs.gather(1, labels.clamp(max=3).unsqueeze(1)).squeeze(1)
    before = scores.clone()
    for mode in ('pixel', 'class'):
        exact = ConformalCalibrator(4, alpha=0.1, mode=mode, method='exact')
        exact.update(scores, labels, is_scores=True)
        assert torch.equal(scores, before)
        q = exact.thresholds()
        scores.fill_(0)     # the calibrator kept a copy, not a view of the caller's tensor
        assert torch.equal(exact.thresholds(), q)
        scores.copy_(before)
