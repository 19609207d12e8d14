"""ConformalSAM for semi-supervised semantic segmentation, as an MMSegmentation 1.x plug-in.

Importing the package (e.g. through ``custom_imports`` in a config) registers every component
into mmseg's registries and makes mmengine checkpoints loadable under ``weights_only=True``.
Without OpenMMLab installed only the pure-torch conformal core (``conformalsam_mmseg.conformal``)
is available.
"""
__version__ = '0.1.0'

try:
    import mmseg
except ImportError:  # the conformal core works without OpenMMLab
    mmseg = None

if mmseg is not None:
    from . import annotators, datasets, engine, models  # noqa: F401  (registration)
    from .utils import register_checkpoint_safe_globals
    register_checkpoint_safe_globals()
