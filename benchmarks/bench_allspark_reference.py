"""Our AllSpark against the authors' computation (re-typed in tests/allspark_reference.py):
CPU seconds per step on identical weights and inputs.

    python benchmarks/bench_allspark_reference.py [--batch 4] [--crop 160] [--iters 7] [--threads 2]

Two measurements, each ours vs the reference, alternating one iteration of each so that load
from other processes hits both alike (medians and their ratio are printed):

* ``module``: the AllSpark module alone, forward + backward on a (2B, C, h, w) feature of
  MiT-B0's deepest stage (C = 256, 5 x 5 positions at crop 160), memory on, plus the
  evaluation forward on B maps (the authors duplicate the feature; ours computes the half
  that is kept);
* ``step``: the whole AllSpark training step of configs/_base_/models/allspark_mit-b0.py at
  random init (eval-mode pseudo-label pass, training forward, both losses, backward, the
  authors' SGD step), memory on.

Before timing, the two are checked to give the same loss on the first step.
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.allspark import deepest_feature_size

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tests'))
from allspark_reference import (ReferenceAllSpark, ReferenceAllSparkModel,  # noqa: E402
                                authors_sgd)


def samples(maps):
    return [SegDataSample(gt_sem_seg=PixelData(data=m[None])) for m in maps]


def alternate(fns, iters):
    """Median seconds of each function, run in turn ``iters`` times after one warm-up."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(what, medians):
    ours, ref = medians['ours'], medians['reference']
    print(f'{what:8s} ours {ours:.4f} s, reference {ref:.4f} s, ratio ours / reference '
          f'{ours / ref:.2f}')


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
    cfg.semi_train_cfg.memory_warmup_iters = 0
    b, c, k = args.batch, args.crop, cfg.segmentor.decode_head.num_classes
    ours = MODELS.build(cfg).train()
    theirs = copy.deepcopy(ours)
    reference = ReferenceAllSparkModel(theirs)

    # --- the module alone --------------------------------------------------------------
    module = ours.allspark
    ref_module = ReferenceAllSpark(theirs.allspark)
    h, w = deepest_feature_size(c)
    feat = torch.randn(2 * b, module.embed[0].in_channels, h, w)
    logits = torch.randn(b, k, c, c)

    def our_module():
        module.prepare(logits, use_memory=True)
        module(feat.clone().requires_grad_()).sum().backward()
        with torch.no_grad():
            module.eval()
            module(feat[:b])
            module.train()

    def their_module():
        x = feat.clone().requires_grad_()
        ref_module.forward(x, True, logits, using_smem=True).sum().backward()
        with torch.no_grad():
            ref_module.forward(feat[:b], training=False)

    report('module', alternate(dict(ours=our_module, reference=their_module), args.iters))

    # --- the whole training step ---------------------------------------------------------
    inputs = dict(sup=torch.randn(b, 3, c, c), unsup_weak=torch.randn(b, 3, c, c))
    mask_x = torch.randint(0, k, (b, c, c))
    ignore = torch.zeros(b, c, c, dtype=torch.long)
    data_samples = dict(sup=samples(mask_x), unsup_weak=samples(ignore))
    ours.allspark.semantic_memory.load_state_dict(theirs.allspark.semantic_memory.state_dict())
    reference.allspark.kv_queue = theirs.allspark.semantic_memory.queue.clone()
    reference.allspark.queue_ptr = theirs.allspark.semantic_memory.ptr.clone()
    our_optim, their_optim = authors_sgd(ours), authors_sgd(theirs)

    def our_step():
        losses = ours.loss(inputs, data_samples)
        loss = sum(v for name, v in losses.items() if 'loss' in name)
        our_optim.zero_grad()
        loss.backward()
        our_optim.step()
        return loss

    def their_step():
        loss = reference.loss(inputs['sup'], mask_x, inputs['unsup_weak'], ignore, True)
        their_optim.zero_grad()
        loss.backward()
        their_optim.step()
        return loss

    torch.manual_seed(1)
    first_ours = our_step()
    torch.manual_seed(1)
    first_theirs = their_step()
    gap = abs(first_ours.item() - first_theirs.item())
    print(f'MiT-B0 AllSpark, batch {b}+{b}, crop {c}, {args.threads} threads, {args.iters} '
          f'alternating iterations (torch {torch.__version__}); first-step loss ours '
          f'{first_ours.item():.6f}, reference {first_theirs.item():.6f} (|diff| {gap:.1e})')
    report('step', alternate(dict(ours=our_step, reference=their_step), args.iters))


if __name__ == '__main__':
    main()
