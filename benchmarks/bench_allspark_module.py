"""Seconds per AllSpark training iteration on CPU, with and without the AllSpark module.

    python benchmarks/bench_allspark_module.py [--batch 4] [--crop 160] [--iters 7] [--threads 2]

Three models, same weights, same batch (B labeled + B unlabeled crops, CamVid's 11 classes),
MiT-B0 SegFormer of configs/_base_/models/allspark_mit-b0.py at random init:

* ``segformer``: the AllSpark training step (eval-mode pseudo-label pass, train-mode forward of
  cat(labeled, unlabeled), both CE losses, backward, SGD step) with the neck bypassed, i.e.
  the same SegFormer without the module;
* ``allspark-batch``: the module on, the labeled half attending to the batch (warm-up);
* ``allspark-memory``: after the warm-up, the labeled half attending to the semantic memory.

The measurements alternate (one iteration of each in turn) so that load from other processes
hits all of them alike; medians are reported, and each AllSpark step's ratio to the SegFormer
step, for wall time and for the process's CPU time (less sensitive to other processes on a
shared machine).
"""
import argparse
import os.path as osp
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.segmentors import allspark  # noqa: F401  (registers AllSpark)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def samples(maps):
    return [SegDataSample(gt_sem_seg=PixelData(data=m[None])) for m in maps]


def build(cfg, warmup, state=None):
    model = MODELS.build(cfg.copy())
    model.semi_train_cfg['memory_warmup_iters'] = warmup
    if state is not None:
        model.load_state_dict(state)
    return model.train()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--crop', type=int, default=160)
    parser.add_argument('--iters', type=int, default=7)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    init_default_scope('mmseg')
    torch.manual_seed(0)

    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/models/allspark_mit-b0.py')).model
    cfg.segmentor.backbone.init_cfg = None
    cfg.data_preprocessor.data_preprocessor.size = (args.crop, args.crop)
    b, c, k = args.batch, args.crop, cfg.segmentor.decode_head.num_classes

    base = build(cfg, warmup=10**9)
    state = base.state_dict()
    models = {
        'segformer': base,
        'allspark-batch': build(cfg, warmup=10**9, state=state),
        'allspark-memory': build(cfg, warmup=0, state=state),
    }
    # The same SegFormer without the module: the neck passes MiT's features through.
    base.student.neck.forward = lambda feats: feats
    optims = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
              for name, m in models.items()}

    inputs = dict(sup=torch.randn(b, 3, c, c), unsup_weak=torch.randn(b, 3, c, c))
    data_samples = dict(sup=samples(torch.randint(0, k, (b, c, c))),
                        unsup_weak=samples(torch.zeros(b, c, c, dtype=torch.long)))

    def step(name):
        model, optim = models[name], optims[name]
        start, cpu_start = time.perf_counter(), time.process_time()
        losses = model.loss(inputs, data_samples)
        total = sum(v for n, v in losses.items() if 'loss' in n)
        optim.zero_grad()
        total.backward()
        optim.step()
        return time.perf_counter() - start, time.process_time() - cpu_start

    for name in models:  # warm-up: allocator, first-call overheads; fills the memory
        step(name)
    # Matmul / conv FLOPs of one step (forward + backward), a load-independent count that
    # leaves out the element-wise work (norms, softmax, dropout).
    flops = {}
    for name in models:
        with FlopCounterMode(display=False) as counter:
            step(name)
        flops[name] = counter.get_total_flops()
    times = {name: [] for name in models}
    cpu_times = {name: [] for name in models}
    for _ in range(args.iters):
        for name in models:
            wall, cpu = step(name)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    assert models['allspark-memory'].allspark.kv_source == 'memory'
    assert models['allspark-batch'].allspark.kv_source == 'batch'

    print(f'MiT-B0 SegFormer, batch {b}+{b}, crop {c}, {args.threads} threads, '
          f'{args.iters} alternating iterations each (torch {torch.__version__})')
    ref, ref_min = statistics.median(times['segformer']), min(times['segformer'])
    cpu_ref = statistics.median(cpu_times['segformer'])
    for name, ts in times.items():
        med, cpu = statistics.median(ts), statistics.median(cpu_times[name])
        print(f'{name:16s} wall: median {med:.3f} s/iter, ratio {med / ref:.2f}; '
              f'min {min(ts):.3f}, ratio {min(ts) / ref_min:.2f}; max {max(ts):.3f} | '
              f'process CPU: median {cpu:.3f} s/iter, ratio {cpu / cpu_ref:.2f} | '
              f'{flops[name] / 1e9:.2f} GFLOP, ratio {flops[name] / flops["segformer"]:.3f}')
    mod = models['allspark-batch'].allspark
    print(f'AllSpark module parameters: {sum(p.numel() for p in mod.parameters()) / 1e6:.2f} M; '
          f'memory buffer: {mod.semantic_memory.queue.numel() * 4 / 2**20:.2f} MiB')


if __name__ == '__main__':
    main()
