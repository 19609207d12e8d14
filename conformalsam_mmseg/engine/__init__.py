from . import hooks  # noqa: F401
from .conformalsam_runner import ConformalSAMRunner, check_current_form

__all__ = ['ConformalSAMRunner', 'check_current_form']
