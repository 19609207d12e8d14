"""truncated_fraction / truncation_message: how much a top-k cache cuts true classes out."""
import pytest
import torch

from conformalsam_mmseg.annotators.cache import encode_entry, read_entry, topk_to_dense
from conformalsam_mmseg.conformal import conformal_quantile
from conformalsam_mmseg.conformal.truncation import (truncated_counts, truncated_fraction,
                                                     truncation_message)


def _hand_case():
    """4 classes, 2 x 3 pixels, a top-2 cache read back densely (two classes are 0 per pixel).

    pixel  label  cached (class: p)     true class cut?
    (0,0)  0      0: .6, 1: .4          no
    (0,1)  2      0: .7, 1: .3          yes
    (0,2)  255    0: .5, 3: .5          (ignored; its label's p would be 0 for class 1)
    (1,0)  3      2: .8, 3: .2          no
    (1,1)  1      2: .9, 3: .1          yes
    (1,2)  1      0: .55, 2: .45        yes
    -> 3 of the 5 labeled pixels.
    """
    probs = torch.zeros(4, 2, 3)
    for (i, j), cached in {(0, 0): {0: .6, 1: .4}, (0, 1): {0: .7, 1: .3},
                           (0, 2): {0: .5, 3: .5}, (1, 0): {2: .8, 3: .2},
                           (1, 1): {2: .9, 3: .1}, (1, 2): {0: .55, 2: .45}}.items():
        for k, p in cached.items():
            probs[k, i, j] = p
    labels = torch.tensor([[0, 2, 255], [3, 1, 1]])
    return probs, labels


def test_fraction_by_hand():
    probs, labels = _hand_case()
    assert truncated_counts(probs, labels, 2) == (3, 5)
    assert truncated_fraction(probs, labels, 2) == pytest.approx(3 / 5)
    # batched input, and the ignored pixel really is ignored (label 1 there would be cut)
    batch = torch.stack([probs, probs])
    assert truncated_counts(batch, torch.stack([labels, labels]), 2) == (6, 10)
    relabeled = labels.clone()
    relabeled[0, 2] = 1
    assert truncated_counts(probs, relabeled, 2) == (4, 6)
    # numpy in, another ignore index
    other = labels.clone()
    other[0, 2] = 9
    assert truncated_fraction(probs.numpy(), other.numpy(), 2, ignore_index=9) == \
        pytest.approx(3 / 5)


def test_a_full_cache_gives_zero():
    """Negative control: with every class cached a zero probability is the annotator's own
    (nothing was cut), so the same maps count no truncation."""
    probs, labels = _hand_case()
    assert truncated_counts(probs, labels, 4) == (0, 5)
    assert truncated_fraction(probs, labels, 4) == 0.0
    assert truncated_fraction(probs, labels, None) == 0.0
    # no labeled pixel at all
    assert truncated_fraction(probs, torch.full((2, 3), 255), 2) == 0.0


def test_through_a_real_cache_entry(tmp_path):
    """A top-2 entry of 5 classes, read back as the calibration reads it: the fraction is
    that of true classes outside torch.topk(probs, 2); the full entry of the same map: 0."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.randn(5, 16, 16, generator=gen).softmax(0)  # every p > 1/510
    labels = torch.randint(0, 5, (16, 16), generator=gen)
    labels[:2] = 255
    names = [f'c{k}' for k in range(5)]
    fractions = {}
    for k in (2, 5):
        path = tmp_path / f'k{k}.topk'
        path.write_bytes(encode_entry(probs, stem='x', class_names=names, annotator='a',
                                      topk=k, codec='none'))
        entry = read_entry(str(path))
        dense = topk_to_dense(entry.index, entry.prob, 5)
        fractions[k] = truncated_fraction(dense, labels, entry.topk)
    top2 = probs.topk(2, dim=0).indices
    valid = labels != 255
    outside = (top2 != labels.clamp(max=4)).all(0) & valid
    expected = float(outside.sum()) / float(valid.sum())
    assert 0.3 < expected < 0.9  # a case where truncation matters
    assert fractions[2] == pytest.approx(expected)
    assert fractions[5] == 0.0


def test_quantile_is_one_below_the_fraction_as_the_message_says():
    probs, labels = _hand_case()
    fraction = truncated_fraction(probs, labels, 2)
    valid = labels != 255
    scores = 1 - probs.gather(0, labels.clamp(max=3).unsqueeze(0))[0][valid]
    for alpha in (0.5 * fraction, 0.99 * fraction):
        assert float(conformal_quantile(scores, alpha)) == 1.0
    assert float(conformal_quantile(scores, 0.9)) < 1.0  # above it, q can drop below 1

    message = truncation_message(fraction, 2, 4)
    assert message == (
        'the cache keeps the top-2 of 4 classes; 60.0% of labeled pixels have their true '
        'class outside it, so the pixel-mode quantile is 1 (keeps everything) for every '
        'alpha below 60.0%; remake the cache with all classes (--topk 4)')
    assert '8.2% of labeled pixels' in truncation_message(0.082, 3, 11)
    assert 'below 8.2%' in truncation_message(0.082, 3, 11)
    assert '(--topk 11)' in truncation_message(0.082, 3, 11)
    assert '0.35% of labeled' in truncation_message(0.0035, 3, 11)
    assert 'no labeled pixel' in truncation_message(0.0, 3, 11)
    assert 'keeps all 11 classes' in truncation_message(0.0, 11, 11)


def test_bad_inputs_are_named():
    probs, labels = _hand_case()
    with pytest.raises(ValueError, match='topk must be in 1..4'):
        truncated_fraction(probs, labels, 5)
    with pytest.raises(ValueError, match='outside the 4 classes'):
        truncated_fraction(probs, torch.tensor([[0, 7, 255], [3, 1, 1]]), 2)
    with pytest.raises(ValueError, match=r'must be in \[0, 1\]'):
        truncation_message(1.5, 2, 4)
