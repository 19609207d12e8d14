from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class MeanTeacherHook(Hook):
    """EMA teacher for ``SemiSegmentor``s built with ``semi_train_cfg.ema_teacher=True``.

    After every ``interval`` iterations: teacher = (1 - momentum) * teacher + momentum * student,
    for parameters and buffers (BN statistics) alike, as MMDetection 3.x's MeanTeacherHook.
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, momentum=0.001, interval=1, skip_buffers=False):
        if not 0 < momentum < 1:
            raise ValueError(f'MeanTeacherHook: momentum must be in (0, 1), got {momentum}')
        self.momentum = momentum
        self.interval = interval
        self.skip_buffers = skip_buffers

    def before_train(self, runner):
        model = self._model(runner)
        if not hasattr(model, 'teacher'):
            raise AttributeError(
                'MeanTeacherHook needs a model with a teacher network; build the '
                'SemiSegmentor with semi_train_cfg=dict(ema_teacher=True, ...).')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if (runner.iter + 1) % self.interval == 0:
            model = self._model(runner)
            self.momentum_update(model, self.momentum)

    def momentum_update(self, model, momentum):
        student = dict(model.student.named_parameters())
        for name, teacher_param in model.teacher.named_parameters():
            teacher_param.data.mul_(1 - momentum).add_(student[name].data, alpha=momentum)
        if self.skip_buffers:
            return
        student_buffers = dict(model.student.named_buffers())
        for name, teacher_buf in model.teacher.named_buffers():
            src = student_buffers[name]
            if teacher_buf.dtype.is_floating_point:
                teacher_buf.data.mul_(1 - momentum).add_(src.data, alpha=momentum)
            else:  # e.g. BN's num_batches_tracked
                teacher_buf.data.copy_(src.data)

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model
