"""The calibration hook's pictures: calibration_report.png for either filter."""


def plot_risk_calibration(path, report, t, classes):
    """Left: the labeled images' mean risk R(t) against t, the target and the chosen t (pixel
    mode's). Right, per class: t_k, kept ratio on the unlabeled images, precision of the kept
    labels on the labeled images."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cal = report['calibration']
    curve = report['risk_curve']
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(9, 0.5 * len(classes) + 6), 3.8),
        gridspec_kw=dict(width_ratios=[1, max(1.2, len(classes) / 8)]))
    xs = [x for x in curve['thresholds'] if x is not None]
    left.plot(xs, curve['risk'][:len(xs)], color='0.3', lw=1.2,
              label=f"{cal['risk']} on labeled images")
    left.axhline(cal['target'], color='tab:red', ls='--', lw=1, label='target')
    pooled = cal['groups'][0]
    if pooled['threshold'] is not None:
        left.axvline(pooled['threshold'], color='tab:blue', lw=1,
                     label=f"t = {pooled['threshold']:.3f}")
    left.set_xlabel('confidence threshold t')
    left.set_ylabel('mean per-image risk')
    left.set_title('all pixels: ' + (pooled['source'] if pooled['threshold'] is not None
                                     else 'keep nothing'), fontsize=9)
    left.legend(fontsize=7)
    unl = {row['name']: row for row in report['unlabeled']['classes']}
    lab = {row['name']: row for row in report['labeled']['classes']}
    series = {'threshold t': [min(float(v), 1.0) for v in t],
              'kept ratio (unlabeled)': [unl[c]['kept_ratio'] or 0.0 for c in classes],
              'precision (labeled)': [lab[c]['precision'] or 0.0 for c in classes]}
    width = 0.27
    for j, (name, values) in enumerate(series.items()):
        right.bar([i + (j - 1) * width for i in range(len(classes))], values, width, label=name)
    right.set_xticks(range(len(classes)))
    right.set_xticklabels(classes, rotation=45, ha='right')
    right.set_ylim(0, 1.05)
    right.set_title(f"risk-controlled labels: {cal['risk']} <= {cal['target']:g}, "
                    f"delta {cal['delta']:g}, mode {cal['mode']}", fontsize=9)
    right.legend(fontsize=7, ncol=3, loc='upper center', bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_calibration(path, report, q, classes, alpha):
    """Bar plot per class: threshold q_k, kept-pixel ratio and precision of kept pixels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    per_class = {row['name']: row for row in report.get('classes', [])}
    series = {
        'threshold q': [min(float(v), 1.0) for v in q],
        'kept ratio': [per_class.get(c, {}).get('kept_ratio') or 0.0 for c in classes],
        'precision of kept': [per_class.get(c, {}).get('precision') or 0.0 for c in classes],
    }
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(classes) + 2), 3.6))
    width = 0.27
    for j, (name, values) in enumerate(series.items()):
        ax.bar([i + (j - 1) * width for i in range(len(classes))], values, width, label=name)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45, ha='right')
    ax.set_ylim(0, 1.05)
    coverage = report.get('holdout_coverage')
    ax.set_title(f'ConformalSAM calibration, alpha = {alpha}'
                 + (f', held-out coverage {coverage:.3f}' if coverage is not None else ''))
    ax.legend(fontsize=8, ncol=3, loc='upper center', bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
