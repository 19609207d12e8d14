"""Synthetic exchangeable pixels with a known law, for the conformal tests.

Every pixel is drawn independently: its class y from ``priors``, the annotator's logits from
N(0, 1) plus ``strengths[y]`` on the true class. A weak strength makes an annotator that is
often wrong about that class (a high score 1 - p_y). Probabilities are the softmax of logits.
"""
import torch


def synthetic_pixels(num_pixels, priors, strengths, seed, width=100):
    """(probs (B, K, H, W) float32, labels (B, H, W) int64) with B * H * W = ``num_pixels``
    and H = 1, W = ``width``, so that every "image" is a row of exchangeable pixels."""
    priors = torch.as_tensor(priors, dtype=torch.float64)
    strengths = torch.as_tensor(strengths, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(priors, num_pixels, replacement=True, generator=generator)
    logits = torch.randn(num_pixels, len(priors), generator=generator)
    logits[torch.arange(num_pixels), labels] += strengths[labels]
    probs = torch.softmax(logits, dim=1)
    images = num_pixels // width
    probs = probs.view(images, 1, width, -1).permute(0, 3, 1, 2).contiguous()
    return probs, labels.view(images, 1, width)


def coverage(sets, labels):
    """Share of pixels whose true class is in their prediction set, per class and overall."""
    covered = sets.gather(1, labels.unsqueeze(1)).squeeze(1)
    per_class = {int(k): float(covered[labels == k].float().mean())
                 for k in torch.unique(labels)}
    return float(covered.float().mean()), per_class
