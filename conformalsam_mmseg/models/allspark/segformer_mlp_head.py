"""SegFormer's all-MLP decoder as AllSpark's authors use it (one Linear per level)."""
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS


@MODELS.register_module()
class SegformerMLPHead(BaseDecodeHead):
    """The SegFormer head of the AllSpark (and original SegFormer) code.

    Each level i (c1 .. c4) is embedded by one ``Linear(in_channels[i], channels)`` with bias,
    applied to every position; the embeddings of c4, c3, c2 are resized to c1's size
    (bilinear, ``align_corners``), concatenated in the order c4, c3, c2, c1, fused by a 1x1
    conv-norm-ReLU (``channels * 4 -> channels``, no bias), then Dropout2d(``dropout_ratio``)
    and the 1x1 classifier ``conv_seg`` (``BaseDecodeHead.cls_seg``).

    mmseg's ``SegformerHead`` differs: a 1x1 conv-norm-ReLU per level instead of the Linear,
    and the concatenation in the order c1 .. c4; it stays available as an option
    (``decode_head=dict(type='SegformerHead', ...)``).

    ``conv_seg`` keeps PyTorch's default initialisation, as the authors' classifier
    (mmseg's heads draw it from N(0, 0.01) unless ``init_cfg`` says so).

    Args:
        interpolate_mode (str): 'bilinear'.
        **kwargs: ``BaseDecodeHead``'s; ``in_channels`` and ``in_index`` are lists of the
            levels, ``channels`` the embedding width (768 for MiT-B5).
    """

    def __init__(self, interpolate_mode='bilinear', init_cfg=None, **kwargs):
        super().__init__(input_transform='multiple_select', init_cfg=init_cfg, **kwargs)
        self.interpolate_mode = interpolate_mode
        num_inputs = len(self.in_channels)
        if num_inputs != len(self.in_index):
            raise ValueError(f'SegformerMLPHead: in_channels {self.in_channels} and in_index '
                             f'{self.in_index} must name the same levels')
        self.linears = nn.ModuleList(nn.Linear(c, self.channels) for c in self.in_channels)
        self.fusion_conv = ConvModule(self.channels * num_inputs, self.channels, 1,
                                      conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                                      act_cfg=self.act_cfg)

    def embed(self, x, linear):
        """(B, C_in, h, w) -> (B, channels, h, w): the Linear applied at every position."""
        b, _, h, w = x.shape
        return linear(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, inputs):
        inputs = self._transform_inputs(inputs)
        size = inputs[0].shape[2:]
        outs = []
        for x, linear in reversed(list(zip(inputs, self.linears))):  # c4, c3, c2, c1
            out = self.embed(x, linear)
            if out.shape[2:] != size:
                out = resize(out, size=size, mode=self.interpolate_mode,
                             align_corners=self.align_corners)
            outs.append(out)
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
