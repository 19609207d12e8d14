"""CPU seconds per UniMatch training iteration: ours against the authors' loop, re-typed.

    python benchmarks/bench_unimatch_step.py [--batch 2] [--crop 128] [--iters 15] [--threads 2]

Both run one whole iteration on the same tensors from the same weights: the no-grad pass over
the CutMix source, the forward of labeled + weak views with feature perturbation, the forward of
the two strong views, the loss, backward and the SGD step with the authors' parameter groups.
Ours is ``UniMatch.loss`` + mmengine's optimizer wrapper built from
configs/_base_/schedules/unimatch_sgd.py (it also draws its CutMix boxes, which the authors draw
in their data loader); the reference is tests/unimatch_reference.py (the authors'
DeepLabV3Plus forward and loop body, re-typed) with a copy of our weights. The network is
DeepLabV3+ ResNet-18 V1c (configs/_base_/models/deeplabv3plus_r18.py, random init, plain BN,
output stride 16) under UniMatchDeepLabV3PlusHead, 128 channels. The first iteration runs both
from the same RNG state and the same boxes and prints the two losses, which must agree; the
timed iterations alternate which one goes first, so that both see the same machine load. On a
shared machine the fastest iteration of each (the least disturbed) is the estimate of its cost;
medians are printed too. Results go into docs/semi_supervised.md.
"""
import argparse
import os.path as osp
import sys
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.segmentors import unimatch as unimatch_module
from conformalsam_mmseg.models.utils import cutmix_boxes

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'tests'))
import unimatch_reference as reference  # noqa: E402

NUM_CLASSES = 21


def make_batch(b, crop, g):
    """One iteration's tensors in the authors' form (float boxes, 255 = padding)."""
    img = lambda: torch.randn(b, 3, crop, crop, generator=g)  # noqa: E731
    batch = dict(img_x=img(), mask_x=torch.randint(0, NUM_CLASSES, (b, crop, crop), generator=g),
                 ignore_mask=torch.zeros(b, crop, crop, dtype=torch.long),
                 ignore_mask_mix=torch.zeros(b, crop, crop, dtype=torch.long))
    batch['ignore_mask'][:, -crop // 8:] = 255
    for view in ('img_u_w', 'img_u_s1', 'img_u_s2'):
        batch[view], batch[view + '_mix'] = img(), img()
    for name in ('cutmix_box1', 'cutmix_box2'):
        batch[name] = cutmix_boxes(b, crop, crop, generator=g).float()
    return batch


def our_inputs(batch):
    def samples(maps):
        return [SegDataSample(gt_sem_seg=PixelData(data=m[None])) for m in maps]
    ignore = torch.cat((batch['ignore_mask'], batch['ignore_mask_mix']))
    inputs = dict(sup=batch['img_x'])
    for branch, view in (('unsup_weak', 'img_u_w'), ('unsup_strong1', 'img_u_s1'),
                         ('unsup_strong2', 'img_u_s2')):
        inputs[branch] = torch.cat((batch[view], batch[view + '_mix']))
    return inputs, dict(sup=samples(batch['mask_x']), unsup_weak=samples(ignore),
                        unsup_strong1=samples(ignore), unsup_strong2=samples(ignore))


def build(conf_thresh):
    net = Config.fromfile(osp.join(REPO, 'configs/_base_/models/deeplabv3plus_r18.py')).model
    net.pretrained = None
    net.decode_head.update(type='UniMatchDeepLabV3PlusHead', align_corners=True,
                           num_classes=NUM_CLASSES)
    ours = MODELS.build(dict(type='UniMatch', segmentor=net,
                             semi_train_cfg=dict(conf_thresh=conf_thresh)))
    schedule = Config.fromfile(osp.join(REPO, 'configs/_base_/schedules/unimatch_sgd.py'))
    optim_wrapper = build_optim_wrapper(ours, schedule.optim_wrapper)
    ref = reference.reference_for(ours.student.decode_head, ours.student.backbone)
    return ours, optim_wrapper, ref, reference.sgd(ref, lr=schedule.optimizer.lr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=2, help='labeled = u = mix images')
    parser.add_argument('--crop', type=int, default=128)
    parser.add_argument('--iters', type=int, default=15)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--conf-thresh', type=float, default=0.95)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    init_default_scope('mmseg')
    ours, optim_wrapper, ref, ref_optimizer = build(args.conf_thresh)
    batch = make_batch(args.batch, args.crop, torch.Generator().manual_seed(0))
    inputs, samples = our_inputs(batch)

    def our_step():
        loss, _ = ours.parse_losses(ours.loss(inputs, samples))
        optim_wrapper.update_params(loss)
        return loss.item()

    def reference_step():
        return reference.unimatch_step(ref, ref_optimizer, batch, args.conf_thresh)['loss'].item()

    # First iteration: the same RNG state and boxes for both, as a check of equal work.
    draw = unimatch_module.cutmix_boxes
    boxes = iter([batch['cutmix_box1'].bool(), batch['cutmix_box2'].bool()])
    unimatch_module.cutmix_boxes = lambda *a, **k: next(boxes)
    torch.manual_seed(0)
    loss_ours = our_step()
    unimatch_module.cutmix_boxes = draw
    torch.manual_seed(0)
    loss_ref = reference_step()

    times = dict(ours=[], reference=[])
    steps = dict(ours=our_step, reference=reference_step)
    for i in range(args.iters):
        for name in (('ours', 'reference') if i % 2 == 0 else ('reference', 'ours')):
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}

    b = args.batch
    print(f'UniMatch iteration, DeepLabV3+ R-18 + UniMatchDeepLabV3PlusHead (128 ch), crop '
          f'{args.crop}, {b} labeled + {b} unlabeled + {b} CutMix-source images, '
          f'{args.threads} threads, {args.iters} iterations each')
    print(f'first-iteration loss: ours {loss_ours:.6f}, reference {loss_ref:.6f} '
          f'(|diff| {abs(loss_ours - loss_ref):.1e})')
    print(f"{'':<10s} {'fastest':>8s} {'median':>8s}  s/iter")
    for name in ('reference', 'ours'):
        print(f'{name:<10s} {best[name]:8.3f} {median[name]:8.3f}')
    print(f"ours / reference: fastest {best['ours'] / best['reference']:.3f}, "
          f"median {median['ours'] / median['reference']:.3f}")

if __name__ == '__main__':
    main()
