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


def _decode_head_loss(loss_decode, logits, target):
    """The loss MMSegmentation's decode head computes from ``logits`` (already at the labels'
    size) with ``loss_decode``."""
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    import conformalsam_mmseg  # noqa: F401  (registers ProbOhemLoss)
    head = MODELS.build(dict(type='FCNHead', in_channels=4, channels=4, num_convs=0,
                             concat_input=False, num_classes=logits.shape[1],
                             loss_decode=loss_decode))
    samples = [SegDataSample(gt_sem_seg=PixelData(data=t[None])) for t in target]
    return head.loss_by_feat(logits, samples)


def test_decode_head_loss_is_the_hosts_labeled_loss():
    """ProbOhemLoss in a plain model's decode head: the loss and gradient of the hosts'
    sup_loss (prob_ohem_cross_entropy) on the same logits, so a supervised model trains with
    the hosts' labeled loss."""
    logits, target = _case(6, k=11, h=16, w=16)
    logits = logits.float()
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    losses = _decode_head_loss(dict(type='ProbOhemLoss', thresh=0.7, min_kept=100),
                               ours_in, target)
    ref = prob_ohem_cross_entropy(ref_in, target, thresh=0.7, min_kept=100)
    assert set(losses) == {'loss_ohem', 'acc_seg'}
    losses['loss_ohem'].backward()
    ref.backward()
    torch.testing.assert_close(losses['loss_ohem'], ref)
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    # negative control: the base config's cross-entropy is another loss on these logits
    plain = _decode_head_loss(dict(type='CrossEntropyLoss', avg_non_ignore=True), logits, target)
    assert abs(float(plain['loss_ce']) - float(ref)) > 1e-3


def test_decode_head_loss_rejects_bad_options():
    from conformalsam_mmseg.models.losses import ProbOhemLoss
    with pytest.raises(ValueError, match='thresh'):
        ProbOhemLoss(thresh=1.5)
    logits, target = _case(7)
    with pytest.raises(ValueError, match='sampler'):
        ProbOhemLoss()(logits, target, weight=torch.ones_like(target, dtype=logits.dtype))
