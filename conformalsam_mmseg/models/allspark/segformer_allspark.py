"""Where AllSpark sits in SegFormer: between MiT's deepest stage and the SegFormer head."""
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from .allspark_module import AllSparkModule


def deepest_feature_size(crop_size, patch_sizes=(7, 3, 3, 3), strides=(4, 2, 2, 2)):
    """(h, w) of MiT's last stage for a ``crop_size`` (h, w) input.

    Each stage's patch embedding is a conv with kernel p, stride s, padding p // 2. For the
    default MiT and an odd crop this is ``crop // 32 + 1`` (513 -> 17, AllSpark's memory length
    17 * 17 = 289); for 512 it is 16.
    """
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    size = list(crop_size)
    for p, s in zip(patch_sizes, strides):
        size = [(x + 2 * (p // 2) - p) // s + 1 for x in size]
    return tuple(size)


@MODELS.register_module()
class AllSparkNeck(BaseModule):
    """The AllSpark module applied to the deepest of MiT's features, a neck of an
    ``EncoderDecoder`` (MixVisionTransformer -> AllSparkNeck -> SegformerHead).

    Training: the batch is cat(labeled, unlabeled) and the module's labeled half is reborn from
    the unlabeled channels (or the semantic memory). Evaluation: the authors duplicate the
    deepest feature and keep the first half; the module computes that half directly (see
    :class:`AllSparkModule`), on the feature of the batch as it is.

    Args:
        in_channels (int): channels of MiT's last stage (512 for MiT-B5, 256 for MiT-B0).
        num_classes (int): number of classes (semantic memory queues). The ``AllSpark``
            segmentor fills it from ``decode_head.num_classes`` when left None.
        crop_size (int | tuple): training crop (h, w); sets the memory vector length N. The
            ``AllSpark`` segmentor fills it from its data preprocessor's ``size`` when None.
        embed_channels (int, optional): channels inside the module (default ``in_channels``).
        num_heads (int): 2. attn_drop (float): 0.1.
        eval_keys (str): 'batch' (the authors': in evaluation each image attends to the
            channels of every image of the batch) or 'self' (each image to its own).
        memory_sync (str): 'rank0' (the authors') or 'all_gather', see ``SemanticMemory``.
        patch_sizes, strides: MiT's, to compute the deepest feature size.
        feature_size (tuple, optional): (h, w) of the deepest training feature, for backbones
            other than MiT (e.g. crop // 16 for a CNN at output stride 16); when given,
            ``patch_sizes`` and ``strides`` are not used.
    """

    def __init__(self, in_channels, num_classes=None, crop_size=None, embed_channels=None,
                 num_heads=2, attn_drop=0.1, eval_keys='batch', memory_sync='rank0',
                 patch_sizes=(7, 3, 3, 3), strides=(4, 2, 2, 2), feature_size=None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if num_classes is None or crop_size is None:
            raise ValueError(
                'AllSparkNeck needs num_classes and crop_size (the training crop) to size its '
                f'semantic memory, got num_classes={num_classes}, crop_size={crop_size}. Inside '
                "an 'AllSpark' model both are filled from decode_head.num_classes and the data "
                "preprocessor's size.")
        if feature_size is None:
            h, w = deepest_feature_size(crop_size, patch_sizes, strides)
        elif (len(feature_size) != 2
              or not all(isinstance(v, int) and v > 0 for v in feature_size)):
            raise ValueError(f'AllSparkNeck: feature_size must be the (h, w) of the deepest '
                             f'training feature, two positive ints, got {feature_size!r}')
        else:
            h, w = feature_size
        self.allspark = AllSparkModule(in_channels, num_classes, num_tokens=h * w,
                                       embed_channels=embed_channels, num_heads=num_heads,
                                       attn_drop=attn_drop, eval_keys=eval_keys,
                                       memory_sync=memory_sync)

    def forward(self, feats):
        *shallow, deepest = feats
        return [*shallow, self.allspark(deepest)]
