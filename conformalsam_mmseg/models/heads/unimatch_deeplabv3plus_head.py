"""The DeepLabV3+ head of UniMatch (Yang et al., CVPR 2023), as an MMSegmentation decode head."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.aspp_head import ASPPModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS


@MODELS.register_module()
class UniMatchDeepLabV3PlusHead(BaseDecodeHead):
    """DeepLabV3+ as the authors of UniMatch build it, with plain (not separable) convolutions.

    * ASPP on c4 (``in_index``): one conv-BN-ReLU branch per dilation (1 = a 1x1 conv, else a
      3x3 atrous conv), then image pooling (global average, 1x1 conv-BN-ReLU, broadcast back),
      concatenated in that order and projected by a 1x1 conv-BN-ReLU to ``channels``;
    * c1 (``c1_in_index``) reduced to ``c1_channels`` by a 1x1 conv-BN-ReLU;
    * the ASPP output upsampled bilinearly to c1's size (``align_corners``, True in the
      authors' model), concatenated after the reduced c1, fused by two 3x3 conv-BN-ReLU;
    * a 1x1 classifier with bias (``conv_seg``), after dropout only if ``dropout_ratio`` > 0
      (the authors have none, hence the default 0).

    The authors' widths for ResNet-101 are ``channels=256`` (ASPP = in_channels // 8 = 256,
    fusion 256) and ``c1_channels=48``; here both ASPP and fusion have ``channels``.
    MMSegmentation's ``DepthwiseSeparableASPPHead`` (separable 3x3 convs, image pooling first)
    takes the same arguments except ``c1_in_index`` and stays available.

    Args:
        dilations (tuple[int]): one ASPP branch each; (1, 6, 12, 18) is the authors' 1x1 branch
            plus rates 6, 12, 18.
        c1_in_channels (int): channels of the low-level feature c1.
        c1_channels (int): channels c1 is reduced to.
        c1_in_index (int): index of c1 among the backbone's outputs (0: stride 4).
    """

    def __init__(self, dilations=(1, 6, 12, 18), c1_in_channels=256, c1_channels=48,
                 c1_in_index=0, dropout_ratio=0.0, **kwargs):
        super().__init__(dropout_ratio=dropout_ratio, **kwargs)
        if c1_in_channels <= 0 or c1_channels <= 0:
            raise ValueError(
                f'UniMatchDeepLabV3PlusHead fuses c1 with the ASPP output and needs '
                f'c1_in_channels > 0 and c1_channels > 0, got {c1_in_channels} and '
                f'{c1_channels}; for a head without c1 use ASPPHead.')
        layer = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.dilations = tuple(dilations)
        self.c1_in_index = c1_in_index
        self.aspp_modules = ASPPModule(self.dilations, self.in_channels, self.channels, **layer)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), ConvModule(self.in_channels, self.channels, 1, **layer))
        self.bottleneck = ConvModule(
            (len(self.dilations) + 1) * self.channels, self.channels, 1, **layer)
        self.c1_bottleneck = ConvModule(c1_in_channels, c1_channels, 1, **layer)
        self.fuse = nn.Sequential(
            ConvModule(self.channels + c1_channels, self.channels, 3, padding=1, **layer),
            ConvModule(self.channels, self.channels, 3, padding=1, **layer))

    def aspp(self, c4):
        """ASPP: the atrous branches, then image pooling, projected to ``channels``."""
        pooled = F.interpolate(self.image_pool(c4), size=c4.shape[2:], mode='bilinear',
                               align_corners=self.align_corners)
        return self.bottleneck(torch.cat(self.aspp_modules(c4) + [pooled], dim=1))

    def decode(self, c1, c4):
        """Features before the classifier: the authors' ``_decode`` up to ``classifier``."""
        c4 = F.interpolate(self.aspp(c4), size=c1.shape[2:], mode='bilinear',
                           align_corners=self.align_corners)
        return self.fuse(torch.cat((self.c1_bottleneck(c1), c4), dim=1))

    def forward(self, inputs):
        c4 = self._transform_inputs(inputs)
        return self.cls_seg(self.decode(inputs[self.c1_in_index], c4))
