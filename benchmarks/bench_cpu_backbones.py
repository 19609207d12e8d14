"""CPU training-step cost of DeepLabV3+ on EfficientNet-Lite0 vs ResNet-18.

Times forward + backward + SGD step of mmseg's ``EncoderDecoder.loss`` (inputs already
normalised by the data preprocessor) at batch 8, for the two CPU-sized configs:

* configs/_base_/models/deeplabv3plus_efficientnet-lite0.py (ImageNet weights, OS 16)
* configs/_base_/models/deeplabv3plus_r18.py with ``pretrained=None`` (plain BN, OS 16)

Both heads get ``num_classes=11``. Usage::

    .venv/bin/python benchmarks/bench_cpu_backbones.py [--threads 2] [--iters 3] [--warmup 1]
        [--os32]

On a CPU shared with other jobs the median drifts with the load; the minimum is the closer
estimate of the uncontended cost.
"""
import argparse
import os.path as osp
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS_DIR = osp.join(REPO, 'configs', '_base_', 'models')
CONFIGS = {
    'DLv3+ EfficientNet-Lite0': 'deeplabv3plus_efficientnet-lite0.py',
    'DLv3+ ResNet-18 (V1c)': 'deeplabv3plus_r18.py',
}


# Optional extra row (--os32): EfficientNet-Lite0 at output stride 32, ASPP dilations halved.
OS32 = ('DLv3+ EffNet-Lite0 OS32', 'deeplabv3plus_efficientnet-lite0.py',
        dict(backbone=dict(output_stride=32), decode_head=dict(dilations=(1, 3, 6, 9))))


def build(cfg_file, num_classes=11, overrides=None):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(osp.join(MODELS_DIR, cfg_file))
    cfg.model.pretrained = None  # ResNet-18: no download; EfficientNet: loads its own weights
    cfg.model.decode_head.num_classes = num_classes
    if overrides:
        cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def batch(n, h, w, num_classes, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, h, w), generator=g, dtype=torch.long))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def time_train_step(model, data, iters, warmup):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    model.train()
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        losses = model.loss(data['inputs'], data['data_samples'])
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--iters', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--sizes', default='160x160,240x320', help='HxW list')
    ap.add_argument('--os32', action='store_true',
                    help='also time EfficientNet-Lite0 at output stride 32')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import conformalsam_mmseg  # noqa: F401  (registers EfficientNetLite0)

    sizes = [tuple(int(v) for v in s.split('x')) for s in args.sizes.split(',')]
    runs = [(name, f, None) for name, f in CONFIGS.items()] + ([OS32] if args.os32 else [])
    rows = []
    for name, cfg_file, overrides in runs:
        model = build(cfg_file, overrides=overrides)
        n_all = sum(p.numel() for p in model.parameters())
        n_bb = sum(p.numel() for p in model.backbone.parameters())
        for h, w in sizes:
            model.data_preprocessor.size = (h, w)
            data = model.data_preprocessor(batch(args.batch, h, w, 11), training=True)
            med, best = time_train_step(model, data, args.iters, args.warmup)
            rows.append((name, f'{h}x{w}', n_bb, n_all, med, best))
            print(f'  {name:26s} {h}x{w}: median {med:.3f} s/iter', flush=True)

    print(f'\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, '
          f'{args.iters} timed iters after {args.warmup} warm-up; forward+backward+SGD step')
    hdr = f'{"model":26s} {"input":>8s} {"backbone params":>16s} {"total params":>13s} ' \
          f'{"s/iter (median)":>16s} {"s/iter (min)":>13s}'
    print(hdr)
    print('-' * len(hdr))
    for name, size, n_bb, n_all, med, best in rows:
        print(f'{name:26s} {size:>8s} {n_bb / 1e6:>15.2f}M {n_all / 1e6:>12.2f}M '
              f'{med:>16.3f} {best:>13.3f}')


if __name__ == '__main__':
    main()
