"""docs/results/camvid_convergence.md and its PNG, from the convergence study's results."""
import os
import os.path as osp
import statistics


def _curves(results, runs, key, bn):
    return {results[n]['seed']: {int(k): v for k, v in results[n][key].items()}
            for n, _, b, _ in runs if b == bn and n in results}


def _stats(curves):
    its = sorted(set.intersection(*(set(c) for c in curves.values()))) if curves else []
    out = []
    for it in its:
        vals = [c[it] for c in curves.values()]
        out.append((it, statistics.mean(vals),
                    statistics.stdev(vals) if len(vals) > 1 else 0.0, vals))
    return out


def write(results, runs, length, table, args, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    png = osp.join(out_dir, 'camvid_convergence.png')
    groups = {('selection', 0.1): _curves(results, runs, 'val_curve', 0.1),
              ('val', 0.1): _curves(results, runs, 'val', 0.1),
              ('selection', None): _curves(results, runs, 'val_curve', None),
              ('val', None): _curves(results, runs, 'val', None)}
    plot(groups, length, png)
    seeds = sorted(groups[('selection', 0.1)])
    lines = [
        '# CamVid: how long the benchmark trains (supervised convergence, split 1/8)', '',
        'Made by `benchmarks/camvid/convergence.py` (its docstring has the protocol). The '
        'supervised row of the benchmark (DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0, '
        f'160 px crops, batch 4, SGD lr {args.lr:g} with poly decay over {args.iters} iterations) '
        f'on the labeled 1/8 split (46 images), seeds {", ".join(map(str, seeds))}, evaluated '
        f'every {args.every} iterations on the selection set (62 0001TP frames of CamVid test) '
        'and, from the kept checkpoints, on val (101 frames of 0016E5). mIoU in %, mean ± std '
        'over the seeds.', '',
        '| iteration | selection, BN 0.1 | val, BN 0.1 | selection, BN 0.01 | val, BN 0.01 |',
        '|---|---|---|---|---|']
    stats = {k: {it: (m, sd) for it, m, sd, _ in _stats(v)} for k, v in groups.items()}
    its = sorted(stats[('selection', 0.1)])
    for it in its:
        cells = []
        for key in (('selection', 0.1), ('val', 0.1), ('selection', None), ('val', None)):
            m = stats[key].get(it)
            n = len(groups[key])
            cells.append('-' if m is None else f'{m[0]:.1f}' + (f' ± {m[1]:.1f}' if n > 1 else ''))
        lines.append(f'| {it} | ' + ' | '.join(cells) + ' |')
    n_pkg = len(groups[('selection', None)])
    lines += [
        '', f'BN 0.1: the backbone\'s default (PyTorch\'s momentum), {len(seeds)} '
        f'seed{"s" if len(seeds) != 1 else ""}. '
        f'BN 0.01: `bn_momentum=None`, the EfficientNet package\'s (TensorFlow\'s decay 0.99), '
        f'{n_pkg} seed{"s" if n_pkg != 1 else ""}. Note that the learning rate decays over the '
        f'whole {args.iters} iterations, so an intermediate point is not a shorter run.', '',
        (f'**Length: {length} iterations.**' if length is not None else
         f'**Length: not chosen yet** ({len(seeds)} of {len(args.seeds)} seeds finished).')
        + ' Rule (fixed before the runs, selection set only): the '
        'smallest evaluated iteration whose mean selection mIoU is within one seed standard '
        'deviation of the best mean at any later iteration.', '',
        f'![mIoU against iterations]({osp.basename(png)})', '']
    if n_pkg:
        lines += bn_comparison(groups, stats, length)
    path = osp.join(out_dir, 'camvid_convergence.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines))
    return path


def bn_comparison(groups, stats, length):
    """BN momentum 0.1 minus 0.01 seed by seed (same seed: same data order and head
    initialisation), against the spread of the BN 0.1 seeds."""
    lines = []
    seeds = sorted(set(groups[('selection', None)]) & set(groups[('selection', 0.1)]))
    for seed in seeds:
        for split in ('selection', 'val'):
            a, b = groups[(split, 0.1)][seed], groups[(split, None)][seed]
            its = [it for it in sorted(a) if it in b]
            lines.append(f'BN momentum, {split} mIoU of 0.1 minus 0.01, seed {seed}: '
                         + ', '.join(f'{it}: {a[it] - b[it]:+.1f}' for it in its) + '.')
        if length is not None and length in groups[('val', None)][seed]:
            parts = []
            for split in ('selection', 'val'):
                d = groups[(split, 0.1)][seed][length] - groups[(split, None)][seed][length]
                sd = stats[(split, 0.1)][length][1]
                parts.append(f'{split} {d:+.1f} ({"within" if abs(d) <= sd else "beyond"} the '
                             f'BN 0.1 seeds\' std {sd:.1f})')
            lines.append(f'At the chosen length ({length}), seed {seed}: ' + ', '.join(parts)
                         + '.')
        lines.append('')
    return lines


def plot(groups, length, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, split in zip(axes, ('selection', 'val')):
        for bn, colour in ((0.1, 'C0'), (None, 'C3')):
            curves = groups[(split, bn)]
            for seed, c in curves.items():
                its = sorted(c)
                ax.plot(its, [c[i] for i in its], color=colour, alpha=0.3, lw=1)
            st = _stats(curves)
            if st:
                ax.plot([s[0] for s in st], [s[1] for s in st], color=colour, lw=2,
                        label=f'BN momentum {0.01 if bn is None else bn} (mean of {len(curves)})')
        if length is not None:
            ax.axvline(length, color='k', ls=':', lw=1)
        ax.set_title(f'{split} ({"0001TP of test" if split == "selection" else "0016E5"})')
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('mIoU (%)')
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
