"""The semi-supervised losses are the methods' plain cross-entropy: refuse a ``loss_decode``
that would say otherwise."""
import torch.nn as nn
from mmseg.models.losses import CrossEntropyLoss

PLAIN = "dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True)"


def check_plain_cross_entropy(decode_head, method):
    """Fail if ``decode_head.loss_decode`` is not the plain cross-entropy the semi-supervised
    segmentors compute themselves (``F.cross_entropy(pred, label, ignore_index=255)``: softmax,
    no class weights, mean over the pixels that are not ignored, weight 1).

    ``method`` names the segmentor in the message. A config that sets OHEM, class weights, a
    sigmoid, another weight or several losses would otherwise be trained with plain
    cross-entropy without a word.
    """
    loss = decode_head.loss_decode
    problems = []
    if isinstance(loss, nn.ModuleList):
        problems.append(f'{len(loss)} losses')
    elif not isinstance(loss, CrossEntropyLoss):
        problems.append(f'type {type(loss).__name__}')
    else:
        for name, expected in (('use_sigmoid', False), ('use_mask', False),
                               ('class_weight', None), ('loss_weight', 1.0),
                               ('avg_non_ignore', True), ('reduction', 'mean')):
            value = getattr(loss, name)
            if value != expected:
                problems.append(f'{name}={value!r}')
    if problems:
        raise ValueError(
            f'{method} computes its losses as the plain cross-entropy of the authors (ignore '
            f'255, mean over the labeled pixels) and would not use the decode head\'s '
            f'loss_decode, which has {", ".join(problems)}. Set '
            f'model.segmentor.decode_head.loss_decode={PLAIN}, or train a supervised config '
            'for another loss.')
