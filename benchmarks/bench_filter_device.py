"""Where the pseudo-label head's filter runs: ``filter_device=None`` (default) or ``'cpu'``.

``AnnotatorPseudoLabelHead`` turns a batch's cached annotator top-k into pseudo-labels. With
``filter_device='cpu'`` it moves the compact uint8 top-k to the CPU, filters there and moves the
labels back; with ``None`` it filters where the batch is (the GPU in a GPU run). This times one
call of the head for a CamVid Stage I batch at the half- and full-resolution crops (4 images,
11 classes, top-11, 160 and 320 px) both ways, on the device given (default: CUDA when there is
one), with the filters the benchmark's rows use (the paper's pixel CP with its calibrated q, the
risk filter's per-class thresholds, the raw labels), and checks that both ways give the same
labels and statistics. The annotator output is random (softmax of Gaussian logits, so the top-1
probability spreads over (0, 1)); the filter's cost depends on the shapes, not on the values.

Every round times each variant once, in an order rotated from round to round; the ratio is
'cpu' over None of the summed times.

  .venv/bin/python benchmarks/bench_filter_device.py [--device cuda] [--rounds 20] [--json OUT]
"""
import argparse
import json
import sys
import time

import torch
from mmengine.structures import PixelData

from conformalsam_mmseg.annotators.cache import quantize
from conformalsam_mmseg.models.heads import AnnotatorPseudoLabelHead
from mmseg.structures import SegDataSample

NUM_CLASSES, BATCH = 11, 4
CROPS = (160, 320)
# the benchmark's rows' filters: (name, head options, thresholds)
FILTERS = (
    ('conformal pixel q 0.9725', dict(filter='conformal'), 0.9725),
    ('risk per-class t', dict(filter='risk'),
     [0.4, 0.45, 0.5, 0.55, 0.6, 0.4, 0.45, 0.5, 0.55, 0.6, float('inf')]),
    ('raw (confidence 0)', dict(filter='confidence', confidence_threshold=0.0), None),
)


def batch(crop, device, seed=0):
    """``BATCH`` data samples with top-``NUM_CLASSES`` annotator fields of ``crop`` px."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(BATCH):
        probs = torch.randn(NUM_CLASSES, crop, crop, generator=g).mul_(2).softmax(0)
        values, index = probs.sort(0, descending=True)
        s = SegDataSample()
        s.set_data(dict(
            annotator_topk_index=PixelData(data=index.to(torch.uint8).to(device)),
            annotator_topk_prob=PixelData(data=torch.from_numpy(quantize(values)).to(device))))
        samples.append(s)
    return samples


def head(options, thresholds, filter_device, device):
    h = AnnotatorPseudoLabelHead(NUM_CLASSES, background_index=None,
                                 filter_device=filter_device, **options)
    if thresholds is not None:
        h.set_thresholds(thresholds)
    return h.to(device)


def timed(h, samples, device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    labels, stats = h(samples)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, labels, stats


def measure(device, rounds, crops=CROPS):
    rows = []
    for crop in crops:
        samples = batch(crop, device)
        for name, options, thresholds in FILTERS:
            heads = {'cpu': head(options, thresholds, 'cpu', device),
                     'none': head(options, thresholds, None, device)}
            out = {k: timed(h, samples, device)[1:] for k, h in heads.items()}  # warm-up
            same = (torch.equal(out['cpu'][0], out['none'][0])
                    and out['cpu'][1] == out['none'][1])
            totals = {k: 0.0 for k in heads}
            order = list(heads)
            for r in range(rounds):
                for k in order[r % 2:] + order[:r % 2]:
                    totals[k] += timed(heads[k], samples, device)[0]
            rows.append(dict(crop=crop, filter=name, same_labels=same,
                             kept_ratio=out['none'][1]['pseudo_kept_ratio'],
                             ms_cpu=1000 * totals['cpu'] / rounds,
                             ms_none=1000 * totals['none'] / rounds,
                             ratio_cpu_over_none=totals['cpu'] / totals['none']))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--rounds', type=int, default=20)
    p.add_argument('--json', help='also write the rows to this file')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    print(f'device {name}, PyTorch {torch.__version__}, {torch.get_num_threads()} CPU threads; '
          f'{BATCH} images x {NUM_CLASSES} classes (top-{NUM_CLASSES}), {args.rounds} rounds')
    rows = measure(device, args.rounds)
    print(f'{"crop":>5} {"filter":<26} {"cpu ms":>8} {"None ms":>8} {"cpu/None":>9} '
          f'{"kept":>6}  same labels')
    for r in rows:
        print(f'{r["crop"]:>5} {r["filter"]:<26} {r["ms_cpu"]:>8.1f} {r["ms_none"]:>8.1f} '
              f'{r["ratio_cpu_over_none"]:>9.2f} {r["kept_ratio"]:>6.3f}  {r["same_labels"]}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(device=name, torch=torch.__version__, rounds=args.rounds,
                           rows=rows), f, indent=1)
    return 0 if all(r['same_labels'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
