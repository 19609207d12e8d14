"""AllSpark (CVPR 2024): the module, its semantic memory, and its place in SegFormer."""
from .allspark_module import AllSparkModule, ChannelCrossAttention
from .segformer_allspark import AllSparkNeck, deepest_feature_size
from .semantic_memory import SemanticMemory

__all__ = ['AllSparkModule', 'AllSparkNeck', 'ChannelCrossAttention', 'SemanticMemory',
           'deepest_feature_size']
