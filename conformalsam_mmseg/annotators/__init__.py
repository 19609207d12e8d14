"""Foundation-model annotators behind one interface, and the cache of their outputs.

``annotate(image_bgr_uint8 (H, W, 3), class_names) -> probs (K, H, W)`` at the image's original
size. Backends (registry ``ANNOTATORS``; build with ``build_annotator(dict(type=...))``):

- ``SEEMAnnotator``: the paper's annotator; needs the SEEM code and a checkpoint.
- ``CLIPSegAnnotator``: Hugging Face CLIPSeg, text-prompted.
- ``PrecomputedAnnotator``: reads a cache written anywhere.
- ``SimulatedAnnotator``: ground truth plus a realistic error model, for benchmarks only.

Neither SEEM nor transformers is imported until an annotator that needs it is built. See
docs/annotators.md.
"""
from .base import BaseAnnotator, image_stem
from .cache import (AnnotatorCache, CacheEntry, CacheEntryError, dequantize,
                    quantize, read_entry, topk_to_dense, write_entry)
from .clipseg import CLIPSegAnnotator
from .precomputed import PrecomputedAnnotator
from .registry import ANNOTATORS, build_annotator
from .seem import SEEMAnnotator, seem_semantic_probs
from .simulated import SimulatedAnnotator

__all__ = [
    'ANNOTATORS', 'build_annotator', 'BaseAnnotator', 'image_stem', 'SEEMAnnotator',
    'seem_semantic_probs', 'CLIPSegAnnotator', 'PrecomputedAnnotator', 'SimulatedAnnotator',
    'AnnotatorCache', 'CacheEntry', 'CacheEntryError', 'read_entry', 'write_entry',
    'quantize', 'dequantize', 'topk_to_dense'
]
