"""The annotator registry: ``ANNOTATORS.build(dict(type='SimulatedAnnotator', gap=0.5))``."""
from mmengine.registry import Registry

ANNOTATORS = Registry('annotator', locations=['conformalsam_mmseg.annotators'])


def build_annotator(cfg):
    """An annotator from a config dict (``type`` = a registered name), or ``cfg`` if it is one."""
    from .base import BaseAnnotator
    if isinstance(cfg, BaseAnnotator):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'annotator config must be a dict with a "type" key, got {cfg!r}')
    args = dict(cfg)
    name = args.pop('type')
    # looked up directly: ANNOTATORS.build would search the current default scope ('mmseg')
    # for an annotator registry first and warn that it has none
    cls = ANNOTATORS.get(name) if isinstance(name, str) else name
    if cls is None:
        raise KeyError(f'unknown annotator {name!r}; registered: {sorted(ANNOTATORS.module_dict)}')
    return cls(**args)
