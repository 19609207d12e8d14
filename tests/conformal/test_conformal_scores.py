"""Nonconformity scores: values by hand, calibration and prediction agree bit for bit, registry."""
import pytest
import torch

from conformalsam_mmseg.conformal import (SCORES, ConformalCalibrator, NonconformityScore,
                                          get_score, prediction_sets, register_score)


def _one_pixel(values):
    return torch.tensor(values).view(1, -1, 1, 1)


def test_lac_by_hand():
    probs = _one_pixel([0.5, 0.3, 0.2])
    assert torch.allclose(get_score('lac').all_classes(probs).view(-1),
                          torch.tensor([0.5, 0.7, 0.8]))
    assert torch.allclose(get_score('lac').true_class(probs, torch.tensor([[[1]]])),
                          torch.tensor(0.7))


def test_aps_by_hand():
    # classes ranked 0.5 (k=0), 0.3 (k=1), 0.2 (k=2): cumulative 0.5, 0.8, 1.0
    probs = _one_pixel([0.3, 0.5, 0.2])
    assert torch.allclose(get_score('aps').all_classes(probs).view(-1),
                          torch.tensor([0.8, 0.5, 1.0]))
    # ties rank by class index: equal probabilities 0.4, 0.4 -> 0.4, 0.8
    probs = _one_pixel([0.4, 0.4, 0.2])
    assert torch.allclose(get_score('aps').all_classes(probs).view(-1),
                          torch.tensor([0.4, 0.8, 1.0]))


@pytest.mark.parametrize('name', ['lac', 'aps'])
def test_true_class_score_equals_prediction_score_bitwise(name):
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(4 * torch.randn(3, 21, 17, 19, generator=generator), 1)
    labels = torch.randint(0, 21, (3, 17, 19), generator=generator)
    score = get_score(name)
    gathered = score.all_classes(probs).gather(1, labels.unsqueeze(1)).squeeze(1)
    assert torch.equal(score.true_class(probs, labels), gathered)


def test_calibrated_aps_sets_cover_their_calibration_pixels():
    # with q = the largest calibration score (alpha tiny, n large enough), every calibration
    # pixel's true class is in its set: the score used to calibrate is the one used to predict
    generator = torch.Generator().manual_seed(3)
    probs = torch.softmax(2 * torch.randn(2, 5, 10, 10, generator=generator), 1)
    labels = torch.randint(0, 5, (2, 10, 10), generator=generator)
    calibrator = ConformalCalibrator(5, alpha=1 / 201, score='aps', method='exact')
    calibrator.update(probs, labels)
    sets = prediction_sets(probs, calibrator.thresholds(), score='aps')
    assert sets.gather(1, labels.unsqueeze(1)).all()


def test_register_a_score():
    class Margin(NonconformityScore):
        def all_classes(self, probs):
            return probs.amax(1, keepdim=True) - probs

    try:
        register_score('test_margin')(Margin)
        assert isinstance(get_score('test_margin'), Margin)
        calibrator = ConformalCalibrator(3, alpha=0.5, score='test_margin', method='exact')
        calibrator.update(_one_pixel([0.5, 0.3, 0.2]).expand(1, 3, 4, 4).contiguous(),
                          torch.ones(1, 4, 4, dtype=torch.long))
        assert calibrator.thresholds()[0] == pytest.approx(0.2)
        assert calibrator.config()['score'] == 'test_margin'
        with pytest.raises(ValueError, match='already registered'):
            register_score('test_margin')(Margin)
    finally:
        SCORES.pop('test_margin', None)


def test_unknown_score_name():
    with pytest.raises(ValueError, match="unknown nonconformity score 'nope'"):
        get_score('nope')
    with pytest.raises(ValueError, match='unknown nonconformity score'):
        ConformalCalibrator(3, score='nope')
