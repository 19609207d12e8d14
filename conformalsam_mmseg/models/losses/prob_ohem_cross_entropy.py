"""Online hard example mining by probability: UniMatch's labeled loss on street scenes.

UniMatch's Cityscapes recipe trains the labeled images with ``ProbOhemCrossEntropy2d``
(``thresh=0.7, min_kept=200000``), the OHEM of TorchSemiSeg: the cross-entropy averaged over the
labeled pixels whose softmax probability of the true class is at most a threshold, the
threshold being ``thresh`` raised to the ``min_kept``-th smallest true-class probability when
that is larger, so that at least ``min_kept`` pixels (ties included) are kept. When the batch
has fewer than ``min_kept`` labeled pixels, or ``min_kept`` is 0, every labeled pixel is kept.
"""
import torch
import torch.nn.functional as F


def prob_ohem_cross_entropy(logits, target, thresh=0.7, min_kept=256, ignore_index=255):
    """``logits`` (B, K, H, W), ``target`` (B, H, W) -> the mean cross-entropy over the kept
    pixels (see the module docstring)."""
    valid = target != ignore_index
    num_valid = int(valid.sum())
    kept = valid
    if 0 < min_kept <= num_valid:
        with torch.no_grad():
            prob = logits.detach().softmax(dim=1)
            true_prob = prob.gather(1, target.masked_fill(~valid, 0).unsqueeze(1))[:, 0]
            true_prob = true_prob.masked_fill(~valid, 1.0)
            kth = true_prob.flatten().kthvalue(min(true_prob.numel(), min_kept)).values
            threshold = torch.maximum(kth, torch.as_tensor(float(thresh), dtype=kth.dtype))
            kept = valid & (true_prob <= threshold)
    return F.cross_entropy(logits, target.masked_fill(~kept, ignore_index),
                           ignore_index=ignore_index)
