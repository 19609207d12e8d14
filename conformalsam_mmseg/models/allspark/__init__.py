"""AllSpark (CVPR 2024): the module, its semantic memory, its place in SegFormer, and the
authors' SegFormer head."""
from .allspark_module import AllSparkModule, ChannelCrossAttention
from .segformer_allspark import AllSparkNeck, deepest_feature_size
from .segformer_mlp_head import SegformerMLPHead
from .semantic_memory import SemanticMemory

__all__ = ['AllSparkModule', 'AllSparkNeck', 'ChannelCrossAttention', 'SegformerMLPHead',
           'SemanticMemory', 'deepest_feature_size']
