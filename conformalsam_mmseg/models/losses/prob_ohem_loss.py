"""``ProbOhemLoss``: the hosts' street-scene labeled loss as an MMSegmentation decode-head loss.

UniMatch and AllSpark train their labeled images on street scenes with
``prob_ohem_cross_entropy`` (``semi_train_cfg.sup_loss``). This module is the same loss for a
plain ``EncoderDecoder`` (``decode_head.loss_decode=dict(type='ProbOhemLoss', ...)``), so that a
supervised model can train with the hosts' whole recipe and a host is compared with the
supervised model of its own recipe.
"""
import torch.nn as nn
from mmseg.registry import MODELS

from .prob_ohem_cross_entropy import prob_ohem_cross_entropy


@MODELS.register_module()
class ProbOhemLoss(nn.Module):
    """``thresh`` / ``min_kept``: as ``prob_ohem_cross_entropy``; ``loss_weight`` scales it;
    ``loss_name`` is the key the decode head logs it under."""

    def __init__(self, thresh=0.7, min_kept=256, loss_weight=1.0, loss_name='loss_ohem'):
        super().__init__()
        if not 0 <= thresh <= 1 or min_kept < 0:
            raise ValueError(f'ProbOhemLoss: thresh={thresh!r} must lie in [0, 1] and '
                             f'min_kept={min_kept!r} must be >= 0.')
        self.thresh, self.min_kept = thresh, int(min_kept)
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self, cls_score, label, weight=None, ignore_index=255, **kwargs):
        if weight is not None:
            raise ValueError('ProbOhemLoss mines its own pixels: remove decode_head.sampler '
                             '(a pixel sampler passes weights this loss does not take).')
        return self.loss_weight * prob_ohem_cross_entropy(
            cls_score, label, thresh=self.thresh, min_kept=self.min_kept,
            ignore_index=ignore_index)

    @property
    def loss_name(self):
        return self._loss_name
