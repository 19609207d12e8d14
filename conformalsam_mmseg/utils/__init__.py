from .cpu_distributed import close_distributed, setup_cpu_distributed
from .safe_globals import register_checkpoint_safe_globals

__all__ = ['close_distributed', 'register_checkpoint_safe_globals', 'setup_cpu_distributed']
