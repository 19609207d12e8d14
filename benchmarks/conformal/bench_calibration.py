"""Speed and memory of the conformal core on CPU: calibration and filtering.

Calibration, on a VOC-sized calibration set (1464 images of 500 x 375 pixels, 21 classes):

- ``histogram``: ``ConformalCalibrator`` (streaming, 2^16-bin histograms), 'pixel' and 'class';
- ``exact``: ``ConformalCalibrator(method='exact')``, every score kept, selection (partition);
- ``sort``: the same scores, fully sorted (``numpy.sort``), element r - 1: the textbook method;
- ``torch.quantile``: refuses inputs of more than 2^24 elements, so it is measured, with the
  others beside it, on the largest prefix of the calibration set whose labeled pixels fit.

Throughput counts every pixel of the images (labeled or not) per second of calibration work:
``update()`` calls (input checks, scores, accumulation) plus the final quantile, the fastest of
``--trials`` passes (the machine may be shared). Generating the synthetic data is not timed.
Each configuration runs in its own process, with and without the probability check
(``check_probs``), so that peak memory is its own: ``peak RSS`` is the process's peak resident
memory above what it held after a warm-up update (inputs, code and allocator pools excluded),
``state`` the bytes the method keeps between updates (what grows with the data: 8 bytes per
histogram bin, 4 per stored score).

Synthetic data: probabilities are the softmax of N(0, 2^2) logits, drawn for a pool of 16
images that is cycled (drawing 1464 * 21 * 187,500 fresh values would dominate the run); label
maps are drawn fresh per batch: 25 x 25-pixel tiles of random classes separated by 1-pixel
ignore (255) lines, ~8% of the pixels, stored as uint8 like the dataset's PNGs.

Filtering: ``filter_pseudo_labels`` on a batch of 8 x 21 x 512 x 512 probabilities, one thread,
against ``torch.argmax(dim=1)`` (plain unfiltered pseudo-labels), the same channel loop without
filtering (q = +inf), and one read of the input (``sum``), the floor for any method.

Usage::

    python benchmarks/conformal/bench_calibration.py [--quick] [--json results.json]
"""
import argparse
import json
import math
import os
import os.path as osp
import resource
import subprocess
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from conformalsam_mmseg.conformal import (ConformalCalibrator, conformal_rank,  # noqa: E402
                                          filter_pseudo_labels)

ALPHA = 0.05
POOL_IMAGES = 16
TORCH_QUANTILE_LIMIT = 2 ** 24


def current_rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probability_pool(images, classes, height, width, seed=0):
    """(images, K, H, W) softmax probabilities, built in place so that the process's peak memory
    before calibration is the pool itself."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.empty(images, classes, height, width)
    for i in range(images):
        logits = probs[i]
        logits.normal_(0, 2, generator=generator)
        logits.sub_(logits.amax(0, keepdim=True)).exp_()
        logits.div_(logits.sum(0, keepdim=True))
    return probs


def label_batch(batch, classes, height, width, generator, tile=25):
    tiles = torch.randint(0, classes, (batch, height // tile + 1, width // tile + 1),
                          generator=generator, dtype=torch.uint8)
    labels = tiles.repeat_interleave(tile, 1).repeat_interleave(tile, 2)[:, :height, :width]
    labels = labels.contiguous()
    labels[:, ::tile] = 255
    labels[:, :, ::tile] = 255
    return labels


def run_calibration(method, mode, threads, batches, check_probs, args):
    """One configuration; returns a dict of measurements."""
    torch.set_num_threads(threads)
    pool = probability_pool(POOL_IMAGES, args.classes, args.height, args.width)
    calibrator = ConformalCalibrator(
        args.classes, alpha=ALPHA, mode=mode, check_probs=check_probs,
        method='histogram' if method == 'histogram' else 'exact')
    # warm up (kernels' code paged in, allocator pools made), so peak RSS is the method's own
    calibrator.update(pool[:args.batch], label_batch(
        args.batch, args.classes, args.height, args.width, torch.Generator().manual_seed(1)))
    calibrator.reset()
    rss_before = current_rss()
    best = math.inf
    for _ in range(args.trials):   # best of a few: the machine may be shared
        calibrator.reset()
        generator = torch.Generator().manual_seed(1)
        elapsed, pixels = 0.0, 0
        for i in range(batches):
            start = (i * args.batch) % POOL_IMAGES
            batch_labels = label_batch(args.batch, args.classes, args.height, args.width,
                                       generator)
            tic = time.perf_counter()
            calibrator.update(pool[start:start + args.batch], batch_labels)
            elapsed += time.perf_counter() - tic
            pixels += batch_labels.numel()
        tic = time.perf_counter()
        q = final_quantile(calibrator, method)
        best = min(best, elapsed + time.perf_counter() - tic)
    n = int(calibrator.group_counts().sum())
    if method == 'histogram':
        state = calibrator.state_dict()
        state = (state['counts'].numel() + state['overflow_max'].numel()) * 8
    else:
        state = n * 4
    return dict(method=method, mode=mode, threads=threads, check_probs=check_probs,
                images=batches * args.batch, pixels=pixels, labeled=n, seconds=best,
                pixels_per_s=pixels / best, q=q, state_bytes=state,
                peak_rss_bytes=max(peak_rss() - rss_before, 0))


def final_quantile(calibrator, method):
    """q from the accumulated calibration set, the way ``method`` computes it."""
    n = int(calibrator.group_counts().sum())
    if method in ('histogram', 'exact'):
        return float(calibrator.thresholds().max())
    scores = calibrator.state_dict()['exact_scores'][0]   # one concatenated copy
    r = conformal_rank(n, ALPHA)
    if method == 'sort':
        values = scores.numpy()
        values.sort()
        return float(values[r - 1])
    if n > TORCH_QUANTILE_LIMIT:
        raise ValueError(f'{n} scores exceed the torch.quantile limit')
    # 'lower' at (r - 1) / (n - 1) picks sorted element r - 1: the conformal quantile
    return float(torch.quantile(scores, (r - 1) / (n - 1), interpolation='lower'))


def best_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def run_filtering(args):
    torch.set_num_threads(1)
    k = args.classes
    probs = probability_pool(8, k, 512, 512, seed=2)
    pixel_q = torch.full((k,), 0.9)
    class_q = torch.linspace(0.6, 0.99, k)
    repeat = args.repeat
    out = dict(shape=list(probs.shape), threads=1)
    out['read_once_sum'] = best_time(lambda: probs.sum(), repeat)
    out['torch_argmax'] = best_time(lambda: probs.argmax(1), max(1, repeat // 3))
    out['loop_argmax_unfiltered'] = best_time(
        lambda: filter_pseudo_labels(probs, math.inf, rule='argmax_in_set'), repeat)
    for rule in ('foreground_first', 'singleton', 'argmax_in_set'):
        out[f'{rule}_pixel_q'] = best_time(
            lambda: filter_pseudo_labels(probs, pixel_q, rule=rule), repeat)
        out[f'{rule}_class_q'] = best_time(
            lambda: filter_pseudo_labels(probs, class_q, rule=rule), repeat)
    return out


def child(argv):
    args = parse_args(argv)
    if args.child == 'filtering':
        result = run_filtering(args)
    else:
        method, mode, threads, batches, check = args.child.split(':')
        result = run_calibration(method, mode, int(threads), int(batches), check == 'check',
                                 args)
    print('RESULT ' + json.dumps(result), flush=True)


def spawn(spec, args):
    command = [sys.executable, osp.abspath(__file__), '--child', spec,
               '--images', str(args.images), '--height', str(args.height), '--width',
               str(args.width), '--classes', str(args.classes), '--batch', str(args.batch),
               '--repeat', str(args.repeat), '--trials', str(args.trials)]
    output = subprocess.run(command, capture_output=True, text=True)
    if output.returncode:
        raise RuntimeError(f'{spec} failed:\n{output.stderr[-3000:]}')
    line = [row for row in output.stdout.splitlines() if row.startswith('RESULT ')][-1]
    return json.loads(line[len('RESULT '):])


def mb(n):
    return f'{n / 2 ** 20:,.1f} MB'


def main():
    args = parse_args(sys.argv[1:])
    if args.child:
        return child(sys.argv[1:])
    threads_all = os.cpu_count()
    batches = args.images // args.batch
    pixels_per_batch = args.batch * args.height * args.width
    # the largest prefix whose labeled pixels (~92%) fit torch.quantile
    small_batches = min(batches, int(TORCH_QUANTILE_LIMIT / (0.93 * pixels_per_batch)))
    runs = []
    for threads in sorted({1, threads_all}):
        for check in ('check', 'nocheck'):
            for method, mode in (('histogram', 'pixel'), ('histogram', 'class'),
                                 ('exact', 'pixel'), ('sort', 'pixel')):
                runs.append(spawn(f'{method}:{mode}:{threads}:{batches}:{check}', args))
        for method in ('histogram', 'exact', 'sort', 'quantile'):
            runs.append(spawn(f'{method}:pixel:{threads}:{small_batches}:check', args))
    filtering = spawn('filtering', args)

    print(f'Calibration, alpha={ALPHA}, {args.classes} classes, {args.height}x{args.width} '
          f'images, batches of {args.batch}; CPU with {threads_all} threads')
    header = (f"{'method':<16}{'mode':<7}{'thr':>4}{'check':>6}{'images':>8}{'pixels/s':>15}"
              f"{'seconds':>9}{'peak RSS':>13}{'state':>13}  q")
    print(header)
    for r in runs:
        name = 'torch.quantile' if r['method'] == 'quantile' else r['method']
        print(f"{name:<16}{r['mode']:<7}{r['threads']:>4}{'yes' if r['check_probs'] else 'no':>6}"
              f"{r['images']:>8}"
              f"{r['pixels_per_s']:>15,.0f}{r['seconds']:>9.2f}{mb(r['peak_rss_bytes']):>13}"
              f"{mb(r['state_bytes']):>13}  {r['q']:.6f}")

    print('\nRatios (same run):')
    ratios = {}
    for threads, images, check in sorted({(r['threads'], r['images'], r['check_probs'])
                                          for r in runs}):
        by = {r['method']: r for r in runs if r['threads'] == threads
              and r['images'] == images and r['mode'] == 'pixel'
              and r['check_probs'] == check}
        hist = by['histogram']
        for other in ('exact', 'sort', 'quantile'):
            if other not in by:
                continue
            o = by[other]
            key = f"{other}/{threads}thr/{images}img/{'check' if check else 'nocheck'}"
            ratios[key] = dict(
                speedup=hist['pixels_per_s'] / o['pixels_per_s'],
                peak_memory_share=hist['peak_rss_bytes'] / max(o['peak_rss_bytes'], 1),
                state_share=hist['state_bytes'] / o['state_bytes'])
            print(f"  histogram vs {other:<9} {threads} thread(s), {images} images, "
                  f"check_probs={check}: "
                  f"{ratios[key]['speedup']:.1f}x faster, peak RSS "
                  f"{100 * ratios[key]['peak_memory_share']:.2f}%, state "
                  f"{100 * ratios[key]['state_share']:.3f}% of {other}'s")

    f = filtering
    print(f"\nFiltering a {'x'.join(map(str, f['shape']))} batch, 1 thread (best of "
          f'{args.repeat}):')
    for key, value in f.items():
        if key not in ('shape', 'threads'):
            print(f'  {key:<28}{1e3 * value:8.1f} ms')
    added = [1e3 * (f[f'foreground_first_{q}_q'] - f['loop_argmax_unfiltered'])
             for q in ('pixel', 'class')]
    print(f'  foreground_first adds {added[0]:.1f} ms (pixel q) / {added[1]:.1f} ms (class q) '
          'to an unfiltered argmax by the same loop; '
          f"{f['torch_argmax'] / f['foreground_first_pixel_q']:.1f}x faster than torch.argmax")
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(dict(calibration=runs, ratios=ratios, filtering=filtering), out, indent=1)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=1464)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--width', type=int, default=500)
    parser.add_argument('--classes', type=int, default=21)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--repeat', type=int, default=7, help='filtering timing repeats')
    parser.add_argument('--trials', type=int, default=2,
                        help='calibration passes per configuration, the fastest reported')
    parser.add_argument('--quick', action='store_true', help='a small smoke run')
    parser.add_argument('--json', help='also write the measurements here')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat, args.trials = 48, 2, 1
    return args


if __name__ == '__main__':
    main()
