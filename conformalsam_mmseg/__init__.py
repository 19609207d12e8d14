"""ConformalSAM for semi-supervised semantic segmentation, as an MMSegmentation 1.x plug-in.

Importing the package (e.g. through ``custom_imports`` in a config) registers every component
into mmseg's registries and makes mmengine checkpoints loadable under ``weights_only=True``.
"""
from . import annotators, datasets, engine, models  # noqa: F401  (registration side effects)
from .utils import register_checkpoint_safe_globals

__version__ = '0.1.0'

register_checkpoint_safe_globals()
