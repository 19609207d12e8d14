from . import hooks  # noqa: F401
from .conformalsam_runner import ConformalSAMRunner, apply_conformalsam

__all__ = ['ConformalSAMRunner', 'apply_conformalsam']
