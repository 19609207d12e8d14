"""AllSpark's semantic memory on 2 gloo ranks: the authors' per-rank memory under DDP, and the
all-gather option."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from allspark_reference import ReferenceAllSpark

from conformalsam_mmseg.models.allspark import AllSparkModule

K, C, H, W = 3, 4, 2, 3
STEPS = 3


def step_batch(rank, step):
    """Rank- and step-specific unlabeled channels (B=2, C, h, w) and logits."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(2, C, H, W, generator=g), torch.randn(2, K, 4, 6, generator=g)


def fresh_module():
    torch.manual_seed(0)  # every rank builds the same initial (random) memory
    return AllSparkModule(5, K, num_tokens=H * W, embed_channels=C)


class AuthorsMemory(nn.Module):
    """The authors' arrangement: the memory is a buffer of a DDP-wrapped module, updated per
    rank inside the forward (the reference enqueue), DDP broadcasting buffers from rank 0."""

    def __init__(self):
        super().__init__()
        self.ref = ReferenceAllSpark(fresh_module())
        self.ref.hw = (H, W)
        self.register_buffer('kv_queue', self.ref.kv_queue)
        self.register_buffer('queue_ptr', self.ref.queue_ptr)
        self.linear = nn.Linear(1, 1)

    def forward(self, channels, logits):
        self.ref.kv_queue, self.ref.queue_ptr = self.kv_queue, self.queue_ptr
        self.ref.update_memory(channels.flatten(2).transpose(1, 2), logits)
        return self.linear(torch.ones(1, 1)).sum()


def single_process(batches_per_step):
    """The memory of one process that enqueues the given batches step by step."""
    ref = ReferenceAllSpark(fresh_module())
    ref.hw = (H, W)
    for batches in batches_per_step:
        for channels, logits in batches:
            ref.update_memory(channels.flatten(2).transpose(1, 2), logits)
    return ref.kv_queue, ref.queue_ptr


def worker(rank, store, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    try:
        authors = nn.parallel.DistributedDataParallel(AuthorsMemory())
        ours = {sync: fresh_module().semantic_memory for sync in ('rank0', 'all_gather')}
        for sync, memory in ours.items():
            memory.sync = sync
        for step in range(STEPS):
            channels, logits = step_batch(rank, step)
            authors(channels, logits).backward()
            for memory in ours.values():
                memory.update(channels, logits)
            queue, ptr = authors.module.kv_queue, authors.module.queue_ptr
            assert torch.equal(ours['rank0'].queue, queue), (rank, step)
            assert torch.equal(ours['rank0'].ptr, ptr), (rank, step)
        # all_gather: every rank holds the memory of one process fed both ranks' batches
        gathered = [[step_batch(r, s) for r in (0, 1)] for s in range(STEPS)]
        queue, ptr = single_process(gathered)
        assert torch.equal(ours['all_gather'].queue, queue) and torch.equal(
            ours['all_gather'].ptr, ptr), rank
        torch.save({sync: m.queue for sync, m in ours.items()},
                   os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()
    # leave without running the destructors of the DDP module and the gloo group: in a small
    # fraction of runs one of them never returns once the work is done, and the test would hang
    os._exit(0)


def test_rank0_is_the_authors_ddp_memory_and_all_gather_is_the_global_batch(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / 'store'), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1))
    assert torch.equal(r0['all_gather'], r1['all_gather'])  # one memory on every rank
    # per-rank memories: rank 1 reads rank 0's history plus its own last channels
    assert not torch.equal(r0['rank0'], r1['rank0'])
    # rank 0's memory is rank 0's channels alone: what a checkpoint (rank 0's) resumes from
    queue, _ = single_process([[step_batch(0, s)] for s in range(STEPS)])
    assert torch.equal(r0['rank0'], queue)


@pytest.mark.parametrize('sync', ['rank0', 'all_gather'])
def test_one_process_is_unaffected_by_sync(sync):
    memory = fresh_module().semantic_memory
    memory.sync = sync
    for s in range(STEPS):
        memory.update(*step_batch(0, s))
    queue, ptr = single_process([[step_batch(0, s)] for s in range(STEPS)])
    assert torch.equal(memory.queue, queue) and torch.equal(memory.ptr, ptr)
