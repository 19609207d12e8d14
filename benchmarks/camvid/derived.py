"""What the annotators' labels are worth before any training, measured on the 1/8 split:
pseudo-label quality (quality.py) and the choices read from the labeled images alone (alpha*,
target*; choices.py). Each result is cached as JSON under the work dir with the command that
made its annotator cache, and recomputed when that cache is remade (run.py's steps 4 and 5)."""
import json
import os
import os.path as osp
import time

import inputs
import plan
from inputs import CAMVID, log
from training import dump_json

QUALITY_SPLIT = '1-8'
SIMULATED_GAPS = (0.25, 0.5, 0.75)
ALPHAS = (0.05, 0.1, 0.2)
TAUS = (0.5, 0.9)
CURVE_ALPHAS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6)
RISK_TARGETS = (0.02, 0.05, 0.1)
# what a quality result holds; results of an older version are measured again
# (2: the class mix of the kept labels, quality.LabelCounts' per_class_share / truth_share)
QUALITY_VERSION = 2


def progress(iterable, desc):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, unit='img', dynamic_ncols=True, leave=False)


def run_quality(work_root):
    """Pseudo-label quality of every annotator on the 1/8 split; cached as JSON."""
    import torch

    import quality
    from conformalsam_mmseg.annotators import SimulatedAnnotator
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    torch.set_num_threads(os.cpu_count() or 1)
    classes = CamVidDataset.METAINFO['classes']
    images, labels = (osp.join(CAMVID, d, 'train') for d in ('images', 'labels'))
    labeled, unlabeled = inputs.split_stems(QUALITY_SPLIT)
    sources = {f'cross_sequence_{g}': (lambda g=g: inputs.cache_source(g))
               for g in plan.ANNOTATORS}
    for gap in SIMULATED_GAPS:
        sources[f'simulated_gap{gap:g}'] = (lambda g=gap: quality.simulated_source(
            SimulatedAnnotator(gap=g, seed=0, background_index=None), images, labels, classes))
    fingerprints = {f'cross_sequence_{g}': inputs.cache_fingerprint(g) for g in plan.ANNOTATORS}

    def measure(name, source, fingerprint, targets):
        log(f'pseudo-label quality: {name} on the {len(unlabeled)} unlabeled images of '
            f'split {QUALITY_SPLIT}')
        start = time.perf_counter()
        out = quality.evaluate(source, labeled, unlabeled, classes, alphas=ALPHAS, taus=TAUS,
                               curve_alphas=CURVE_ALPHAS, progress=progress,
                               risk_targets=targets)
        out['risk_targets'] = list(targets)
        out['seconds'] = time.perf_counter() - start
        out['labeled'], out['unlabeled'] = len(labeled), len(unlabeled)
        out['cache'] = fingerprint
        out['version'] = QUALITY_VERSION
        return out

    results = {}
    for name, make in sources.items():
        fingerprint, targets = fingerprints.get(name), quality_risk_targets(name)
        results[name] = cached_json(   # the lambdas run within this iteration
            osp.join(work_root, f'quality_{QUALITY_SPLIT}_{name}.json'),
            lambda: measure(name, make(), fingerprint, targets),
            stale=lambda stored: _stale(stored, fingerprint, targets))
    return results


def quality_risk_targets(source):
    """The risk filter's targets measured for a quality source: every target* candidate for
    the real annotators (the risk rows train at the chosen one), the default for the others."""
    import choices
    return choices.RISK_TARGET_GRID if source.startswith('cross_sequence') else (0.05, )


def _stale(stored, fingerprint, risk_targets):
    return (stored.get('version', 1) != QUALITY_VERSION or stored.get('cache') != fingerprint
            or stored.get('risk_targets', [0.05]) != list(risk_targets))


def run_risk_quality(work_root):
    """Risk-filter quality of the cross-sequence annotator on the 1/8 split; cached as JSON."""
    import torch

    import quality
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    torch.set_num_threads(os.cpu_count() or 1)
    classes = CamVidDataset.METAINFO['classes']
    images, labels = (osp.join(CAMVID, d, 'train') for d in ('images', 'labels'))
    labeled, unlabeled = inputs.split_stems(QUALITY_SPLIT)
    fingerprint = inputs.cache_fingerprint('strong')

    def measure():
        log(f'risk-filter quality on the {len(unlabeled)} unlabeled images of split '
            f'{QUALITY_SPLIT}')
        start = time.perf_counter()
        out = quality.evaluate(inputs.cache_source('strong'), labeled, unlabeled, classes,
                               alphas=(0.05, 0.1), taus=(0.5, 0.9, 0.95, 0.98),
                               risk_targets=RISK_TARGETS, progress=progress)
        out['seconds'] = time.perf_counter() - start
        out['labeled'], out['unlabeled'] = len(labeled), len(unlabeled)
        out['cache'] = fingerprint
        return out
    return cached_json(
        osp.join(work_root, f'risk_quality_{QUALITY_SPLIT}_cross_sequence_strong.json'),
        measure, stale=lambda stored: stored.get('cache') != fingerprint)


def cached_json(path, compute, stale=lambda stored: False):
    """The JSON at ``path``, read once; ``compute()`` makes (and stores) it when the file is
    missing or ``stale(stored)`` says it was made from something else."""
    if osp.exists(path):
        with open(path) as f:
            stored = json.load(f)
        if not stale(stored):
            return stored
    out = compute()
    dump_json(out, path)
    return out


def labeled_choices(work_root, splits, name='alpha'):
    """{split: {group: choices.choose_<name> result}}, read from the labeled images of each
    split (``name``: 'alpha' or 'risk_target'); cached in WORK_DIR/choices_<name>.json and
    recomputed when the group's cache was remade."""
    import choices
    choose = getattr(choices, f'choose_{name}')
    path = osp.join(work_root, f'choices_{name}.json')
    out = cached_json(path, dict)
    for split in splits:
        for group in plan.ANNOTATORS:
            fingerprint = inputs.cache_fingerprint(group)
            if fingerprint is None:
                continue   # not made yet (--report-only before the annotators exist)
            if out.get(split, {}).get(group, {}).get('cache') != fingerprint:
                labeled, _ = inputs.split_stems(split)
                chosen = choose(inputs.cache_source(group), labeled, inputs.NUM_CLASSES)
                out.setdefault(split, {})[group] = dict(chosen, cache=fingerprint)
                dump_json(out, path)
    return out
