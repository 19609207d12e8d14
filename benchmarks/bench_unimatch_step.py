"""Seconds per training iteration of UniMatch vs a supervised step, same model and batch, CPU.

    python benchmarks/bench_unimatch_step.py [--batch 8] [--crop 160] [--iters 5] [--threads 2]

The supervised step trains on B labeled crops; the UniMatch step on the same B labeled crops
plus B unlabeled images (weak + 2 strong views) and B CutMix-source images. Both use
DeepLabV3+ ResNet-18 (configs/_base_/models/deeplabv3plus_r18.py, random init). The UniMatch
step is split into its phases to show what dominates. Results go into docs/unimatch.md.
"""
import argparse
import os.path as osp
import time
from collections import defaultdict

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import conformalsam_mmseg  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def samples(b, crop, num_classes, fill=None):
    out = []
    for _ in range(b):
        data = (torch.full((1, crop, crop), fill) if fill is not None else
                torch.randint(0, num_classes, (1, crop, crop)))
        out.append(SegDataSample(gt_sem_seg=PixelData(data=data)))
    return out


def timed(fn, clock, key):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        clock[key] += time.perf_counter() - start
        return out
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--crop', type=int, default=160)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    init_default_scope('mmseg')
    net = Config.fromfile(osp.join(REPO, 'configs/_base_/models/deeplabv3plus_r18.py')).model
    net.pretrained = None
    net.decode_head.num_classes = 11
    b, c, k = args.batch, args.crop, 11

    sup = MODELS.build(net).train()
    semi = MODELS.build(dict(type='UniMatch', segmentor=net)).train()
    img = lambda n: torch.randn(n, 3, c, c)  # noqa: E731
    sup_batch = (img(b), samples(b, c, k))
    semi_inputs = dict(sup=img(b), unsup_weak=img(2 * b), unsup_strong1=img(2 * b),
                       unsup_strong2=img(2 * b))
    semi_samples = dict(sup=samples(b, c, k), unsup_weak=samples(2 * b, c, k, fill=0),
                        unsup_strong1=samples(2 * b, c, k, fill=0),
                        unsup_strong2=samples(2 * b, c, k, fill=0))

    def step(model, loss_fn, clock=None):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        losses = loss_fn()
        start = time.perf_counter()
        sum(v for n, v in losses.items() if 'loss' in n).backward()
        opt.step()
        opt.zero_grad()
        if clock is not None:
            clock['backward + SGD step'] += time.perf_counter() - start

    clock = defaultdict(float)
    semi.forward_with_fp = timed(semi.forward_with_fp, clock,
                                 'forward cat(x, u_w) + feature perturbation')
    logits = semi.logits

    def phase_logits(network, inputs, feats=None):
        key = ('no-grad eval forward of the mix batch' if not torch.is_grad_enabled()
               else 'forward cat(u_s1, u_s2)')
        return timed(logits, clock, key)(network, inputs, feats)
    semi.logits = phase_logits

    runs = dict(supervised=(sup, lambda: sup.loss(*sup_batch)),
                UniMatch=(semi, lambda: semi.loss(semi_inputs, semi_samples)))
    for model, fn in runs.values():
        step(model, fn)  # warm-up
    clock.clear()
    # Alternate the two steps so that both see the same machine load; report medians.
    times = defaultdict(list)
    for _ in range(args.iters):
        for name, (model, fn) in runs.items():
            start = time.perf_counter()
            step(model, fn, clock if name == 'UniMatch' else None)
            times[name].append(time.perf_counter() - start)
    results = {name: sorted(t)[len(t) // 2] for name, t in times.items()}

    print(f'DeepLabV3+ R-18, crop {c}, batch {b} labeled (+{b} unlabeled, +{b} CutMix source), '
          f'{args.threads} threads, median of {args.iters} iterations')
    print(f"supervised step: {results['supervised']:.3f} s/iter")
    print(f"UniMatch step:   {results['UniMatch']:.3f} s/iter "
          f"({results['UniMatch'] / results['supervised']:.2f}x supervised)")
    total = sum(clock.values())
    for key, value in sorted(clock.items(), key=lambda kv: -kv[1]):
        print(f'  {key:<45s} {value / args.iters:.3f} s  ({100 * value / total:.0f}%)')


if __name__ == '__main__':
    main()
