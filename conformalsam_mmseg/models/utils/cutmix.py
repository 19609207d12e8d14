import math

import torch


def _uniform(low, high, generator):
    return low + (high - low) * torch.rand((), generator=generator).item()


def cutmix_box(height, width, p=0.5, area=(0.02, 0.4), ratio=(0.3, 1 / 0.3), generator=None):
    """A CutMix box as a (height, width) bool mask, all False with probability 1 - p.

    UniMatch's ``obtain_cutmix_box``, extended to rectangular crops: the box covers a fraction
    U(area) of the crop, its aspect ratio h / w is U(ratio), and its top-left corner is uniform
    over the crop; a draw that does not fit is redrawn (ratio and corner), so the accepted
    boxes follow the authors' distribution exactly.
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    if torch.rand((), generator=generator).item() > p:
        return mask
    size = _uniform(*area, generator) * height * width
    while True:
        r = _uniform(*ratio, generator)
        cut_w, cut_h = int(math.sqrt(size / r)), int(math.sqrt(size * r))
        x = int(torch.randint(0, width, (), generator=generator))
        y = int(torch.randint(0, height, (), generator=generator))
        if x + cut_w <= width and y + cut_h <= height:
            break
    mask[y:y + cut_h, x:x + cut_w] = True
    return mask


def cutmix_boxes(batch_size, height, width, device=None, **kwargs):
    """(B, H, W) bool masks, one independent box per sample."""
    boxes = torch.stack([cutmix_box(height, width, **kwargs) for _ in range(batch_size)])
    return boxes.to(device)
