"""prob_ohem_cross_entropy (UniMatch's Cityscapes-recipe labeled loss) against the authors'
ProbOhemCrossEntropy2d re-typed in tests/unimatch_reference.py, and UniMatch with it."""
import pytest
import torch
import torch.nn.functional as F

import unimatch_reference as reference
from conformalsam_mmseg.models.losses import prob_ohem_cross_entropy


def _case(seed, b=2, k=5, h=9, w=11, ignored=0.2, ties=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g, dtype=torch.float64) * 2
    if ties:   # whole rows of identical logits: equal true-class probabilities
        logits[:, :, :3] = 0.0
    target = torch.randint(0, k, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < ignored] = 255
    return logits, target


@pytest.mark.parametrize('seed, thresh, min_kept, ties', [
    (0, 0.7, 50, False),     # thresh decides
    (1, 0.1, 120, False),    # min_kept raises the threshold
    (2, 0.7, 10000, False),  # fewer labeled pixels than min_kept: all of them
    (3, 0.7, 0, False),      # min_kept 0: no mining
    (4, 0.2, 60, True),      # ties at the threshold are all kept
])
def test_loss_and_gradient_equal_the_authors(seed, thresh, min_kept, ties):
    logits, target = _case(seed, ties=ties)
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    ours = prob_ohem_cross_entropy(ours_in, target, thresh=thresh, min_kept=min_kept)
    ref = reference.ProbOhemCrossEntropy2d(255, thresh=thresh, min_kept=min_kept)(
        ref_in, target.clone())
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=0, atol=1e-12)


def test_mining_changes_the_loss():
    """Negative control: in the cases where pixels are dropped, plain cross-entropy differs."""
    for seed, thresh, min_kept in ((0, 0.7, 50), (1, 0.1, 120)):
        logits, target = _case(seed)
        plain = F.cross_entropy(logits, target, ignore_index=255)
        assert abs(prob_ohem_cross_entropy(logits, target, thresh, min_kept) - plain) > 1e-3


def test_unimatch_labeled_loss_option():
    from test_unimatch_fidelity import build_unimatch
    model = build_unimatch(sup_loss=dict(type='ProbOhem', thresh=0.7, min_kept=30))
    logits, target = _case(5, k=21)
    torch.testing.assert_close(model.sup_loss(logits, target),
                               prob_ohem_cross_entropy(logits, target, 0.7, 30))
    plain = build_unimatch()
    torch.testing.assert_close(plain.sup_loss(logits, target),
                               F.cross_entropy(logits, target, ignore_index=255))
    with pytest.raises(ValueError, match='sup_loss'):
        build_unimatch(sup_loss=dict(type='OHEM', keep=3))
