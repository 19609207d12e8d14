"""numpy alphas, 'image' mode states at another alpha, histograms at 2**24 bins with scores
above 1, validation of saved states, and the checks of probabilities given to calibration and
to the filters."""
import copy
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from conformalsam_mmseg.conformal import (ConformalCalibrator, RiskCalibrator,
                                          confidence_pseudo_labels, filter_pseudo_labels)
from conformalsam_mmseg.conformal.quantile import (alpha_fraction, conformal_quantile,
                                                   histogram_bin_index)
from risk_synthetic import as_probs_and_labels, draw_images


def _batch(classes=3, images=2, height=6, width=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(images, classes, height, width, generator=g), 1)
    return probs, torch.randint(0, classes, (images, height, width), generator=g)


# ---------------------------------------------------------------- 1. numpy alphas
@pytest.mark.parametrize('alpha', [np.float64(0.1), np.float32(0.1), np.array(0.1),
                                   np.array(0.1, dtype=np.float32), torch.tensor(0.1)])
def test_numpy_alpha_gives_the_python_float_thresholds(alpha):
    assert alpha_fraction(alpha) == Fraction(1, 10)
    scores = torch.rand(1, 30, 31, generator=torch.Generator().manual_seed(1)) * 1.5
    labels = torch.zeros(1, 30, 31, dtype=torch.long)
    assert conformal_quantile(scores, alpha) == conformal_quantile(scores, 0.1)
    for mode in ('pixel', 'class', 'image'):
        for method in ('histogram', 'exact'):
            ref = ConformalCalibrator(2, alpha=0.1, mode=mode, method=method)
            cal = ConformalCalibrator(2, alpha=alpha, mode=mode, method=method)
            assert cal.alpha == 0.1 and type(cal.alpha) is float
            for c in (ref, cal):
                c.update(scores, labels, is_scores=True)
            assert torch.equal(cal.thresholds(), ref.thresholds())
            assert cal.to_json_dict() == ref.to_json_dict()


def test_numpy_alphas_per_class():
    cal = ConformalCalibrator(3, alpha=np.array([0.1, 0.2, 0.3], dtype=np.float32),
                              mode='class')
    assert cal.alpha == [0.1, 0.2, 0.3]
    assert ConformalCalibrator(3, alpha=[np.float64(0.1)] * 3, mode='class').alpha == [0.1] * 3


@pytest.mark.parametrize('risk', ['false_label_rate', 'kept_error'])
@pytest.mark.parametrize('target', [np.float64(0.05), np.float32(0.05), np.array(0.05)])
def test_numpy_target_error_gives_the_python_float_thresholds(risk, target):
    rng = np.random.default_rng(0)
    probs, labels = as_probs_and_labels(*draw_images(rng, 60, 20, [0.3, 0.6, 1.0],
                                                     [0, 0.2, 0.5]), 3)
    ref = RiskCalibrator(3, target_error=0.05, risk=risk)
    cal = RiskCalibrator(3, target_error=target, risk=risk)
    assert cal.target == 0.05 and type(cal.target) is float
    for c in (ref, cal):
        c.update(probs, labels)
    assert torch.equal(cal.thresholds(), ref.thresholds())


# ---------------------------------------------------------------- 2. 'image' mode alpha
def test_image_state_refuses_another_alpha():
    probs, labels = _batch(images=3)
    saved = ConformalCalibrator(3, alpha=0.25, mode='image')
    saved.update(probs, labels)
    other = ConformalCalibrator(3, alpha=0.1, mode='image')
    with pytest.raises(ValueError, match=r"alpha=0\.25.*alpha=0\.1.*per-image quantiles"):
        other.load_state_dict(saved.state_dict())
    # same alpha (given as numpy), another aggregation: loads
    same = ConformalCalibrator(3, alpha=np.float32(0.25), mode='image',
                               image_aggregation='median')
    same.load_state_dict(saved.state_dict())
    assert torch.equal(same.group_thresholds(), saved.group_thresholds())
    # 'pixel' mode keeps re-thresholding a saved histogram at another alpha
    pixel = ConformalCalibrator(3, alpha=0.25)
    pixel.update(probs, labels)
    ConformalCalibrator(3, alpha=0.1).load_state_dict(pixel.state_dict())


# ---------------------------------------------------------------- 3. 2**24 bins, scores > 1
def test_histogram_at_2_24_bins_is_conservative_above_one():
    num_bins = 2 ** 24
    just_above = torch.tensor([1 + 2 ** -23, 1.0, 2.0], dtype=torch.float32)
    assert histogram_bin_index(just_above, num_bins).tolist() == [num_bins + 1, num_bins,
                                                                  num_bins + 1]
    g = torch.Generator().manual_seed(0)
    for scores in (torch.rand(1, 40, 50, generator=g) * 2,
                   torch.full((1, 10, 10), 1 + 2 ** -23),
                   torch.rand(1, 40, 50, generator=g, dtype=torch.float64) * 3 - 0.5):
        labels = torch.zeros(scores.shape, dtype=torch.long)
        for alpha in (0.05, 0.1, 0.5):
            hist = ConformalCalibrator(2, alpha=alpha, num_bins=num_bins)
            exact = ConformalCalibrator(2, alpha=alpha, method='exact')
            for c in (hist, exact):
                c.update(scores, labels, is_scores=True)
            assert float(hist.thresholds()[0]) >= float(exact.thresholds()[0])


# ---------------------------------------------------------------- 4. saved states
def _saved(mode='class', method='histogram'):
    probs, labels = _batch(images=3)
    labels[0, 0, 0] = 255
    cal = ConformalCalibrator(3, alpha=0.2, mode=mode, method=method, num_bins=256)
    cal.update(probs, labels)
    return cal


def _json_cases():
    hist = _saved().to_json_dict()
    exact = _saved(method='exact').to_json_dict()
    image = _saved(mode='image').to_json_dict()

    def edit(data, change):
        data = copy.deepcopy(data)
        change(data)
        return data

    return [
        ([hist], r'not a ConformalCalibrator JSON \(expected a dict'),
        (edit(hist, lambda d: d.pop('config')), r'config: missing'),
        (edit(hist, lambda d: d['config'].pop('mode')), r'config\.mode: missing'),
        (edit(hist, lambda d: d['config'].update(colour=1)), r"config: unknown keys \['colour'\]"),
        (edit(hist, lambda d: d['config'].update(num_bins=100)), r'config: num_bins must be'),
        (edit(hist, lambda d: d.update(version=2)), r'unsupported calibrator state version 2'),
        (edit(hist, lambda d: d.pop('histograms')), r'histograms: missing'),
        (edit(hist, lambda d: d['histograms'].pop()), r'histograms: expected 3 entries'),
        (edit(hist, lambda d: d['histograms'][1].update(bins=[2, 258], counts=[1, 1])),
         r'histograms\[1\]\.bins\[1\]: expected a bin index in 0\.\.257'),
        (edit(hist, lambda d: d['histograms'][0]['counts'].pop()),
         r'histograms\[0\]\.counts: expected \d+ entries'),
        (edit(hist, lambda d: d['histograms'][0]['counts'].__setitem__(0, -1)),
         r'histograms\[0\]\.counts\[0\]: expected a non-negative integer'),
        (edit(hist, lambda d: d['histograms'][0]['counts'].__setitem__(0, 1.5)),
         r'histograms\[0\]\.counts\[0\]'),
        (edit(hist, lambda d: d['histograms'][2].update(overflow_max=math.nan)),
         r'histograms\[2\]\.overflow_max: expected a number'),
        (edit(hist, lambda d: d['histograms'][0].update(bins=[3, 3], counts=[1, 1])),
         r'histograms\[0\]\.bins: repeats'),
        (edit(exact, lambda d: d['exact_scores'].pop()), r'exact_scores: expected 3 entries'),
        (edit(exact, lambda d: d['exact_scores'][1].append(math.nan)),
         r'exact_scores\[1\]\[\d+\]: expected a number'),
        (edit(exact, lambda d: d.update(exact_dtype='int8')), r'exact_dtype'),
        (edit(image, lambda d: d['images']['n'].pop()), r'images\.n: expected 3 entries'),
        (edit(image, lambda d: d['images']['n'].__setitem__(0, -4)), r'images\.n\[0\]'),
        (edit(image, lambda d: d['images']['q'].__setitem__(1, 'x')), r'images\.q\[1\]'),
        (edit(image, lambda d: d.pop('images')), r'images: missing'),
    ]


@pytest.mark.parametrize('index', range(len(_json_cases())))
def test_bad_json_names_the_field_and_the_file(tmp_path, index):
    data, message = _json_cases()[index]
    with pytest.raises(ValueError, match='calibrator JSON: ' + message):
        ConformalCalibrator.from_json_dict(data)
    path = tmp_path / 'calibration.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f'{path}: {message}'):
        ConformalCalibrator.load_json(path)


def test_load_json_of_a_broken_file_names_it(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"format": ')
    with pytest.raises(ValueError, match=f'{path}: not a JSON file'):
        ConformalCalibrator.load_json(path)


def _state_cases():
    hist = _saved().state_dict()
    exact = _saved(method='exact').state_dict()
    image = _saved(mode='image').state_dict()

    def edit(state, change):
        state = {k: [t.clone() for t in v] if isinstance(v, list) else
                 v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                 for k, v in state.items()}
        change(state)
        return state

    def negative(s):
        s['counts'][1, 5] = -2

    def nan_overflow(s):
        s['overflow_max'][0] = math.nan

    return [
        (hist, [hist], r'not a ConformalCalibrator state \(expected a dict'),
        (hist, edit(hist, lambda s: s.pop('counts')), r'counts: missing'),
        (hist, edit(hist, lambda s: s.update(counts=s['counts'][:, :-1])),
         r'counts: expected shape \(3, 258\), got \(3, 257\)'),
        (hist, edit(hist, lambda s: s.update(counts=s['counts'][:2])),
         r'counts: expected shape \(3, 258\)'),
        (hist, edit(hist, negative), r'counts: holds negative counts'),
        (hist, edit(hist, lambda s: s.update(counts=s['counts'].double())),
         r'counts: expected a integer tensor'),
        (hist, edit(hist, nan_overflow), r'overflow_max: holds NaN'),
        (hist, edit(hist, lambda s: s.update(version=3)), r'unsupported calibrator state'),
        (exact, edit(exact, lambda s: s['exact_scores'].pop()),
         r'exact_scores: expected a list of 3 tensors'),
        (exact, edit(exact, lambda s: s['exact_scores'][0].__setitem__(0, math.nan)),
         r'exact_scores\[0\]: holds NaN'),
        (image, edit(image, lambda s: s.update(image_n=s['image_n'][:2])),
         r'image_n: expected shape \(3,\)'),
        (image, edit(image, lambda s: s.update(image_n=-s['image_n'])),
         r'image_n: holds negative counts'),
    ]


@pytest.mark.parametrize('index', range(len(_state_cases())))
def test_bad_state_names_the_field(index):
    good, bad, message = _state_cases()[index]
    cal = ConformalCalibrator.from_state_dict(good)
    before = cal.state_dict()
    with pytest.raises(ValueError, match='calibrator state: ' + message):
        cal.load_state_dict(bad)
    after = cal.state_dict()   # nothing was loaded
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key])
    with pytest.raises(ValueError, match='calibrator state: ' + message):
        ConformalCalibrator.from_state_dict(bad)


# ---------------------------------------------------------------- 5. probabilities
def test_negative_probabilities_summing_to_one_are_refused():
    probs, labels = _batch()
    probs[0, :, 0, 0] = torch.tensor([1.2, -0.3, 0.1])
    with pytest.raises(ValueError, match=r'probabilities must be >= 0 .*-0\.3.*softmax'
                                         r'.*check_probs=False'):
        ConformalCalibrator(3).update(probs, labels)
    ConformalCalibrator(3, check_probs=False).update(probs, labels)
    ConformalCalibrator(3).update(_batch()[0] - 3e-4 / 3, labels)    # within tolerance


@pytest.mark.parametrize('function', [
    lambda p, **kw: filter_pseudo_labels(p, 0.5, **kw),
    lambda p, **kw: confidence_pseudo_labels(p, 0.5, **kw)])
def test_filters_check_their_probabilities(function):
    probs, _ = _batch()
    name = r'(filter_pseudo_labels|confidence_pseudo_labels): probs must be finite and >= 0'
    for bad in (-0.3, math.nan, math.inf):
        p = probs.clone()
        p[1, 2, 3, 4] = bad
        with pytest.raises(ValueError, match=name + r'.*softmax.*check_probs=False'):
            function(p)
        function(p, check_probs=False)
    # they need not sum to 1: top-k caches, padding (all zero) and SEEM-like scores pass
    unnormalised = probs * 1.5
    unnormalised[:, :, 0, 0] = 0
    assert torch.equal(function(probs), function(probs, check_probs=False))
    function(unnormalised)
    function(probs - 5e-4)    # within tolerance


def test_filter_of_scores_is_not_checked_as_probabilities():
    probs, _ = _batch()
    scores = 1 - probs
    scores[0, 0, 0, 0] = -0.5     # un-normalised annotators can give scores below 0
    filter_pseudo_labels(scores, 0.5, is_scores=True)
