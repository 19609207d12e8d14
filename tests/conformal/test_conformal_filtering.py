"""Prediction sets and the set-to-label rules on hand-made pixels, and fast == definition."""
import numpy as np
import pytest
import torch

from conformalsam_mmseg.conformal import LAC, filter_pseudo_labels, prediction_sets

# one pixel per row, K = 4, class 0 = background; with q = 0.6 (LAC) a class is in C(x) when
# its probability is >= 0.4
PIXELS = torch.tensor([
    # p_0   p_1   p_2   p_3        C(x)     fg_first singleton argmax_in_set
    [0.70, 0.10, 0.10, 0.10],  # {0}      0        0         0
    [0.45, 0.45, 0.10, 0.00],  # {0, 1}   1        255       0 (tie: lowest class)
    [0.30, 0.30, 0.20, 0.20],  # {}       255      255       255
    [0.10, 0.45, 0.45, 0.00],  # {1, 2}   1        255       1
    [0.05, 0.50, 0.00, 0.45],  # {1, 3}   1        255       1
    [0.55, 0.00, 0.00, 0.45],  # {0, 3}   3        255       0
    [0.00, 0.00, 0.90, 0.10],  # {2}      2        2         2
])
EXPECTED = {
    'foreground_first': [0, 1, 255, 1, 1, 3, 2],
    'singleton': [0, 255, 255, 255, 255, 255, 2],
    'argmax_in_set': [0, 0, 255, 1, 1, 0, 2],
}


def _as_image(pixels):
    """(N, K) pixels -> (1, K, 1, N) probabilities."""
    return pixels.t().unsqueeze(0).unsqueeze(2).contiguous()


class _GenericLAC(LAC):
    """LAC through the generic score-map path (the fast path is taken only for LAC itself)."""


def test_prediction_sets_by_hand():
    sets = prediction_sets(_as_image(PIXELS), torch.full((4,), 0.6))
    expected = PIXELS >= 0.4
    assert torch.equal(sets[0, :, 0].t(), expected)


@pytest.mark.parametrize('rule', sorted(EXPECTED))
@pytest.mark.parametrize('score', ['lac', _GenericLAC()])
def test_rules_by_hand(rule, score):
    labels = filter_pseudo_labels(_as_image(PIXELS), torch.full((4,), 0.6), rule=rule,
                                  score=score)
    assert labels.dtype == torch.uint8
    assert labels.view(-1).tolist() == EXPECTED[rule]


@pytest.mark.parametrize('score', ['lac', _GenericLAC()])
def test_foreground_first_without_background(score):
    labels = filter_pseudo_labels(_as_image(PIXELS), 0.6, background_index=None, score=score)
    # the most probable class of the set, background being an ordinary class
    assert labels.view(-1).tolist() == [0, 0, 255, 1, 1, 0, 2]


@pytest.mark.parametrize('score', ['lac', _GenericLAC()])
def test_per_class_thresholds_by_hand(score):
    # background needs p_0 >= 0.8 now: pixel 0 loses its set, pixel 5 keeps only class 3
    q = torch.tensor([0.2, 0.6, 0.6, 0.6])
    labels = filter_pseudo_labels(_as_image(PIXELS), q, score=score)
    assert labels.view(-1).tolist() == [255, 1, 255, 1, 1, 3, 2]
    labels = filter_pseudo_labels(_as_image(PIXELS), q, rule='singleton', score=score)
    assert labels.view(-1).tolist() == [255, 1, 255, 255, 255, 3, 2]


def test_background_in_the_middle_and_infinite_thresholds():
    # background = class 2; q = +inf puts every class in every set
    labels = filter_pseudo_labels(_as_image(PIXELS), float('inf'), background_index=2)
    assert labels.view(-1).tolist() == [0, 0, 0, 1, 1, 0, 3]


def test_scores_input_matches_probabilities():
    labels = filter_pseudo_labels(1 - _as_image(PIXELS), 0.6, is_scores=True)
    assert labels.view(-1).tolist() == EXPECTED['foreground_first']


def _boundary_probs(q, shape, generator):
    """Probabilities packed around the LAC boundary 1 - p = q, to the last bit."""
    tau = np.float32(1) - np.float32(q)
    near = [np.nextafter(tau, np.float32(-1)), tau, np.nextafter(tau, np.float32(2))]
    near += [np.nextafter(v, np.float32(2)) for v in near[-1:]]
    near += [np.nextafter(v, np.float32(-1)) for v in near[:1]]
    values = torch.tensor(np.array(near, dtype=np.float32))
    pick = torch.randint(0, len(values), shape, generator=generator)
    probs = values[pick]
    noise = torch.rand(shape, generator=generator)
    return torch.where(torch.rand(shape, generator=generator) < 0.5, probs, noise)


@pytest.mark.parametrize('rule', sorted(EXPECTED))
@pytest.mark.parametrize('background', [0, 3, None])
def test_fast_path_equals_definition(rule, background):
    """The tau-based LAC path agrees with s_k(x) = 1 - p_k(x) <= q_k on every pixel, including
    probabilities one float step from the boundary."""
    generator = torch.Generator().manual_seed(0)
    for q in ([0.7] * 5, [0.3, 0.7, 0.55, 0.9, 0.7], [2.0 ** -16 * 45875] * 5):
        q = torch.tensor(q, dtype=torch.float64)
        probs = torch.cat([_boundary_probs(float(v), (2, 1, 9, 11), generator) for v in q], 1)
        fast = filter_pseudo_labels(probs, q, rule=rule, background_index=background)
        slow = filter_pseudo_labels(probs, q, rule=rule, background_index=background,
                                    score=_GenericLAC())
        assert torch.equal(fast, slow)
        # the score is a float32 number, q a float64 one: compare them exactly, in float64
        sets = prediction_sets(probs, q)
        assert torch.equal(sets, (1 - probs).double() <= q.view(1, -1, 1, 1))


def test_random_probabilities_all_rules_agree_with_reference():
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(3 * torch.randn(3, 6, 13, 17, generator=generator), 1)
    q = torch.tensor([0.5, 0.8, 0.6, 0.9, 0.7, 0.75])
    sets = (1 - probs) <= q.view(1, -1, 1, 1)
    masked = torch.where(sets, probs, torch.tensor(-1.0))
    fg = masked[:, 1:]
    ff = torch.where(fg.amax(1) >= 0, fg.argmax(1) + 1,
                     torch.where(sets[:, 0], torch.tensor(0), torch.tensor(255)))
    single = torch.where(sets.sum(1) == 1, masked.argmax(1), torch.tensor(255))
    argmax = probs.argmax(1)
    in_set = torch.where(sets.gather(1, argmax.unsqueeze(1)).squeeze(1), argmax,
                         torch.tensor(255))
    for rule, reference in (('foreground_first', ff), ('singleton', single),
                            ('argmax_in_set', in_set)):
        assert torch.equal(filter_pseudo_labels(probs, q, rule=rule).long(), reference)


def test_output_shapes_and_dtypes():
    probs = torch.softmax(torch.randn(5, 6, 7), 0)
    single = filter_pseudo_labels(probs, 0.5)
    assert single.shape == (6, 7) and single.dtype == torch.uint8
    assert torch.equal(filter_pseudo_labels(probs.unsqueeze(0), 0.5)[0], single)
    assert filter_pseudo_labels(probs, 0.5, dtype=torch.long).dtype == torch.long
    many = torch.softmax(torch.randn(1, 300, 2, 2), 1)
    assert filter_pseudo_labels(many, 0.99, ignore_index=1000).dtype == torch.int64
    assert prediction_sets(probs, 0.5).shape == probs.shape
    half = filter_pseudo_labels(probs.half(), 0.5)
    assert torch.equal(half, filter_pseudo_labels(probs.half().float(), 0.5))


def test_inputs_are_not_modified():
    probs = torch.softmax(torch.randn(2, 4, 5, 6), 1)
    before = probs.clone()
    for rule in EXPECTED:
        filter_pseudo_labels(probs, torch.tensor([0.3, 0.5, 0.7, 0.9]), rule=rule)
        filter_pseudo_labels(1 - probs, 0.5, rule=rule, is_scores=True)
    assert torch.equal(probs, before)
