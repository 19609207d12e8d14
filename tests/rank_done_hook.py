"""A hook for the distributed test: each rank writes a file when its training ends."""
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankDoneHook(Hook):

    def after_run(self, runner):
        rank, world_size = get_dist_info()
        with open(osp.join(runner.work_dir, f'rank{rank}.done'), 'w') as f:
            f.write(f'world_size={world_size} iters={runner.iter}')
