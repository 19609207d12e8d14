from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SelfRelianceHook(Hook):
    """Switches ConformalSAM to Stage II (self-reliance) at ``switch_at``.

    ``switch_at``: an iteration (int), or a fraction of ``max_iters`` (float in (0, 1); default
    0.75, the paper's 60 of 80 epochs on VOC and 30 of 40 on ADE20K). Iterations
    ``runner.iter >= switch_iter`` (0-based) train in Stage II. The stage lives in the model's
    state, so a run resumed after the switch stays in Stage II. The hook also tells the model
    the current iteration, which the dynamic loss weighting needs.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, switch_at=0.75):
        if isinstance(switch_at, float) and not 0 < switch_at < 1:
            raise ValueError(f'SelfRelianceHook: a fractional switch_at must lie in (0, 1), '
                             f'got {switch_at}')
        if isinstance(switch_at, int) and switch_at < 0:
            raise ValueError(f'SelfRelianceHook: switch_at must be >= 0, got {switch_at}')
        self.switch_at = switch_at

    def switch_iter(self, max_iters):
        if isinstance(self.switch_at, float):
            return int(round(self.switch_at * max_iters))
        return self.switch_at

    def before_train(self, runner):
        model = self._model(runner)
        if not hasattr(model, 'enter_self_reliance'):
            raise TypeError('SelfRelianceHook needs a ConformalSAM model (model.type='
                            f"'ConformalSAM'), got {type(model).__name__}.")
        runner.logger.info(
            f'ConformalSAM: Stage I (calibrated annotator labels) until iteration '
            f'{self.switch_iter(runner.max_iters)}, then Stage II (self-reliance); now in '
            f'Stage {int(model.stage)}.')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        model = self._model(runner)
        model.set_iter(runner.iter)
        if not model.in_self_reliance and runner.iter >= self.switch_iter(runner.max_iters):
            model.enter_self_reliance(runner.iter, runner.max_iters)
            runner.logger.info(f'ConformalSAM: Stage II (self-reliance) from iteration '
                               f'{runner.iter}: the annotator is no longer used.')
        runner.message_hub.update_scalar('train/conformalsam_stage', int(model.stage))

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model
