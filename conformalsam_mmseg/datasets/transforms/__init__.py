from .loading import LoadCheckedAnnotations
from .rescale import RandomRescale

__all__ = ['LoadCheckedAnnotations', 'RandomRescale']
