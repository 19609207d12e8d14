from .annotator_output import LoadAnnotatorOutput, PackAnnotatorOutput, PadSegFields
from .dummy_seg import LoadDummySegMap
from .loading import LoadCheckedAnnotations
from .multi_branch import MultiBranch
from .photometric import ColorJitter, GaussianBlur
from .rescale import RandomRescale

__all__ = [
    'LoadCheckedAnnotations', 'RandomRescale', 'LoadDummySegMap', 'MultiBranch', 'ColorJitter',
    'GaussianBlur', 'LoadAnnotatorOutput', 'PadSegFields', 'PackAnnotatorOutput'
]
