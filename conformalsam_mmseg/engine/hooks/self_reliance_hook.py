from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SelfRelianceHook(Hook):
    """Switches ConformalSAM to Stage II (self-reliance) at the model's ``self_reliance_at``.

    ``model.self_reliance_at``: an iteration (int), a fraction of ``max_iters`` (float in
    (0, 1); the paper's 0.75), or None (Stage I for the whole run). Iterations
    ``runner.iter >= switch_iter`` (0-based) train in Stage II. The stage lives in the model's
    state, so a run resumed after the switch stays in Stage II. The hook also tells the model
    the current iteration, which the dynamic loss weighting needs.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, switch_at=None):
        if switch_at is not None:
            raise TypeError('SelfRelianceHook reads the switch from the model: set '
                            f'model.self_reliance_at={switch_at!r} instead of the hook\'s '
                            'switch_at (docs/conformalsam.md).')

    def before_train(self, runner):
        model = self._model(runner)
        if not hasattr(model, 'enter_self_reliance'):
            raise TypeError('SelfRelianceHook needs a ConformalSAM model (model.type='
                            f"'ConformalSAM'), got {type(model).__name__}.")
        at = model.switch_iter(runner.max_iters)
        runner.logger.info(
            'ConformalSAM: Stage I (calibrated annotator labels) for the whole run; '
            'model.self_reliance_at is None.' if at is None else
            f'ConformalSAM: Stage I (calibrated annotator labels) until iteration {at}, then '
            f'Stage II (self-reliance); now in Stage {int(model.stage)}.')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = self._model(runner)
        model.set_iter(runner.iter)
        at = model.switch_iter(runner.max_iters)
        if not model.in_self_reliance and at is not None and runner.iter >= at:
            model.enter_self_reliance(runner.iter, runner.max_iters)
            runner.logger.info(f'ConformalSAM: Stage II (self-reliance) from iteration '
                               f'{runner.iter}: the annotator is no longer used.')
            self._forget_stage_one_scalars(runner, model)
        runner.message_hub.update_scalar('train/conformalsam_stage', int(model.stage))

    @staticmethod
    def _forget_stage_one_scalars(runner, model):
        """Drop Stage I's losses and statistics from the message hub: the logger would repeat
        their last values on every Stage II line. A key the host computes again (e.g.
        SelfReliance's ``sup_loss_s``) is logged afresh from its first Stage II value."""
        scalars = runner.message_hub.log_scalars
        names = [k[len('train/'):] for k in scalars if k.startswith('train/')]
        for name in model.stage_one_log_keys(names):
            scalars.pop(f'train/{name}', None)

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model
