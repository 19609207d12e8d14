"""Configs written for the former load-time rewrite get a clear error with the new form.

ConformalSAM configs now say what trains (docs/conformalsam.md): the leaf wraps the host's
model (``model = dict(_delete_=True, type='ConformalSAM', host=_base_.model, ...)``), the
dataset names the annotator cache, and ``custom_hooks`` come from
``configs/_base_/conformalsam.py``. A config that still carries ``runner_type =
'ConformalSAMRunner'`` and a ``conformalsam = dict(...)`` of options is refused with the lines
to write instead, rather than trained without its options.
"""
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

# where each former ``conformalsam.<key>`` lives now
MOVED = dict(
    annotator_cache='train_dataloader.dataset.annotator_cache',
    self_reliance_at='model.self_reliance_at',
    stage_one_weights='model.stage_one_weights',
    holdout_folds='custom_hooks (ConformalCalibrationHook).holdout_folds',
    calibration_interval='custom_hooks (ConformalCalibrationHook).interval',
    **{k: f'model.pseudo_label_head.{k}' for k in (
        'alpha', 'mode', 'score', 'rule', 'background_index', 'filter',
        'confidence_threshold')},
    **{k: f'model.pseudo_label_head.risk_cfg.{k}' for k in (
        'target_error', 'risk', 'delta', 'fallback')})

NEW_FORM = """    _base_ = ['<the host config>', './_base_/conformalsam_<dataset>.py']
    model = dict(_delete_=True, type='ConformalSAM', host=_base_.model,
                 pseudo_label_head=_base_.pseudo_label_head, self_reliance_at=0.75)
    train_dataloader = dict(dataset=dict(annotator_cache=_base_.annotator_cache))"""


def check_current_form(cfg):
    """Raise for a config in the former ``conformalsam = dict(...)`` form."""
    old = cfg.get('conformalsam')
    if old is None and cfg.get('runner_type') != 'ConformalSAMRunner':
        return
    lines = [f'    conformalsam.{k} -> {MOVED.get(k, "(no longer an option)")}'
             for k in (old or {})]
    raise ValueError(
        'this config is in the former ConformalSAM form (runner_type=\'ConformalSAMRunner\', '
        'conformalsam=dict(...)), which rewrote the model at load time. Write the ConformalSAM '
        'model in the config instead (docs/conformalsam.md):\n' + NEW_FORM
        + ('\nand move the options:\n' + '\n'.join(lines) if lines else '')
        + "\nthen remove runner_type and conformalsam.")


@RUNNERS.register_module()
class ConformalSAMRunner(Runner):
    """Refuses configs of the former form (see :func:`check_current_form`)."""

    @classmethod
    def from_cfg(cls, cfg):
        check_current_form(cfg)
        return super().from_cfg(cfg)
