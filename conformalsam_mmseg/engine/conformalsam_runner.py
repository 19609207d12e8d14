"""Turn a semi-supervised config into its ConformalSAM version, at load time.

A config that inherits ``configs/_base_/conformalsam.py`` next to a host config (UniMatch,
AllSpark, or SelfReliance for ConformalSAM alone) carries ``runner_type='ConformalSAMRunner'``
and a ``conformalsam`` dict. mmengine's config inheritance cannot rewrite the host's model and
pipelines from a sibling base, so the runner does it, explicitly, before building anything:

- model: ``ConformalSAM(host=<the host model>, pseudo_label_head=AnnotatorPseudoLabelHead(...))``;
- unlabeled pipeline: ``LoadAnnotatorOutput`` after the image is loaded, ``PadSegFields`` after
  the crop (so the annotator fields are padded like the dummy map), ``PackAnnotatorOutput`` for
  the weak view, which alone receives the annotator fields (``MultiBranch.exclusive_keys``:
  the strong views never copy them);
- hooks: ``ConformalCalibrationHook`` and ``SelfRelianceHook``.

Two switches make the baselines that ConformalSAM is compared with, from the same config:
``filter='confidence'`` replaces conformal calibration by a fixed confidence threshold
``confidence_threshold`` (0: the annotator's raw labels), and ``self_reliance_at=None`` stays in
Stage I for the whole run. ``filter='risk'`` keeps the annotator's argmax where its confidence
reaches a threshold that the calibration hook chooses on the labeled images so that the error
of the kept labels is controlled (``target_error``, ``risk``, ``delta``, ``mode``,
``fallback``; docs/conformal.md).

``apply_conformalsam(cfg)`` is the same rewrite for code that builds runners itself.
"""
import copy

from mmengine.config import ConfigDict
from mmengine.runner import Runner
from mmseg.registry import DATASETS, RUNNERS

from ..annotators.fields import MAP_KEY, TOPK_KEY
from ..models.segmentors.allspark import check_equal_batches


def _require(conformalsam, key):
    if conformalsam.get(key) is None:
        raise KeyError(f"conformalsam.{key} is not set; set it in your config, e.g. "
                       f"conformalsam = dict({key}=...) (see docs/conformalsam.md).")
    return conformalsam[key]


def _index(pipeline, type_name, where):
    for i, step in enumerate(pipeline):
        if step.get('type') == type_name:
            return i
    raise ValueError(f'the unlabeled pipeline has no {type_name} ({where}); ConformalSAM needs '
                     'the semi-supervised pipelines of configs/_base_/datasets/semi/.')


FILTERS = ('conformal', 'confidence', 'risk')
RISK_KEYS = ('target_error', 'risk', 'delta', 'fallback')


def _pseudo_label_head(csam, classes):
    """The ``AnnotatorPseudoLabelHead`` config, and whether it needs a conformal calibration."""
    head = dict(type='AnnotatorPseudoLabelHead', num_classes=len(classes), classes=classes,
                rule=csam.get('rule', 'foreground_first'),
                background_index=csam.get('background_index'), score=csam.get('score', 'lac'))
    kind = csam.get('filter', 'conformal')
    if kind not in FILTERS:
        raise ValueError(f'conformalsam.filter must be one of {FILTERS}, got {kind!r}')
    if kind == 'conformal':
        return head, True
    if kind == 'risk':
        # the hook's RiskCalibrator sets confidence thresholds t_k: argmax where p >= t_k
        head.update(filter='confidence')
        return head, True
    tau = csam.get('confidence_threshold')
    if tau is None or not 0 <= float(tau) <= 1:
        raise ValueError("conformalsam.filter='confidence' needs confidence_threshold in "
                         f'[0, 1] (0: the raw annotator labels), got {tau!r}')
    # Under LAC, C(x) = {k : p_k >= 1 - q}; with q = 1 - tau the most probable class is in C(x)
    # exactly when its probability is >= tau, and 'argmax_in_set' keeps it then.
    head.update(rule='argmax_in_set', background_index=None, score='lac',
                thresholds=1.0 - float(tau))
    return head, False


def _dataset_classes(dataset_cfg):
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(metainfo['classes'])
    return tuple(DATASETS.get(dataset_cfg['type']).METAINFO['classes'])


def apply_conformalsam(cfg):
    """Rewrite ``cfg`` (in place) into ConformalSAM around its model; returns ``cfg``."""
    if cfg.model.get('type') == 'ConformalSAM':
        return cfg
    check_equal_batches(cfg)
    csam = cfg.conformalsam
    dataset = cfg.train_dataloader.dataset
    if dataset.get('type') != 'SemiDataset':
        raise ValueError('ConformalSAM needs a semi-supervised train_dataloader '
                         "(dataset=dict(type='SemiDataset', labeled=..., unlabeled=...)).")
    classes = _dataset_classes(dataset.unlabeled)
    cache_dir = _require(csam, 'annotator_cache')
    num_classes = len(classes)
    head, calibrated = _pseudo_label_head(csam, classes)

    cfg.model = ConfigDict(
        type='ConformalSAM',
        host=cfg.model,
        pseudo_label_head=head,
        stage_one_weights=csam.get('stage_one_weights', dict(sup=1.0, unsup=1.0)))

    pipeline = dataset.unlabeled.pipeline
    load = dict(type='LoadAnnotatorOutput', cache_dir=cache_dir, num_classes=num_classes,
                classes=classes)
    pipeline.insert(_index(pipeline, 'LoadImageFromFile', 'to load the image') + 1, load)
    crop = pipeline[_index(pipeline, 'RandomCrop', 'to crop')]
    pipeline.insert(_index(pipeline, 'RandomCrop', 'to crop') + 1,
                    dict(type='PadSegFields', size=crop['crop_size'],
                         pad_val=dict(img=0, seg=255)))
    branches = pipeline[_index(pipeline, 'MultiBranch', 'to make the views')]
    weak = branches['unsup_weak']
    weak[_index(weak, 'PackSegInputs', "in the 'unsup_weak' branch")] = dict(
        type='PackAnnotatorOutput')
    exclusive = dict(branches.get('exclusive_keys') or {})
    weak_keys = list(exclusive.get('unsup_weak', []))
    exclusive['unsup_weak'] = weak_keys + [k for k in (MAP_KEY, TOPK_KEY) if k not in weak_keys]
    branches['exclusive_keys'] = exclusive

    hooks = list(cfg.get('custom_hooks') or [])
    if calibrated:
        hook = dict(
            type='ConformalCalibrationHook', cache_dir=cache_dir,
            alpha=csam.get('alpha', 0.05), mode=csam.get('mode', 'pixel'),
            score=csam.get('score', 'lac'), rule=csam.get('rule', 'foreground_first'),
            background_index=csam.get('background_index'),
            holdout_folds=csam.get('holdout_folds', 5),
            interval=csam.get('calibration_interval'))
        if csam.get('filter') == 'risk':
            hook.update(filter='risk', **{k: csam[k] for k in RISK_KEYS if k in csam})
        hooks.append(hook)
    switch_at = csam.get('self_reliance_at', 0.75)
    if switch_at is not None:
        hooks.append(dict(type='SelfRelianceHook', switch_at=switch_at))
    cfg.custom_hooks = hooks
    return cfg


@RUNNERS.register_module()
class ConformalSAMRunner(Runner):
    """mmengine's ``Runner`` that first applies :func:`apply_conformalsam` to the config."""

    @classmethod
    def from_cfg(cls, cfg):
        return super().from_cfg(apply_conformalsam(copy.deepcopy(cfg)))
