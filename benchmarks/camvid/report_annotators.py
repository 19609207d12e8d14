"""The annotators' section of docs/results/camvid.md: how good each is on CamVid train.

Reads each cache's manifest (``cache_info.json``, written by tools/train_camvid_annotator.py):
mIoU and per-class IoU of the cached top-1 class on the 367 CamVid train images, top-k coverage
of the true class, the expected calibration error; copies each reliability diagram into the
report's folder.
"""
import json
import os.path as osp
import shlex
import shutil

from training import REPO

DESCRIPTIONS = {
    'strong': 'full resolution (480 x 360), 900 iterations, 256 px crops, flip-averaged',
    'weak': 'half resolution (240 x 180), 500 iterations, 128 px crops',
}


def read(caches):
    """{group: manifest} of the caches that exist (``caches``: {group: folder})."""
    out = {}
    for group, folder in caches.items():
        path = osp.join(folder, 'cache_info.json')
        if osp.exists(path):
            with open(path) as f:
                out[group] = json.load(f)
    return out


def section(caches, out_dir):
    manifests = read(caches)
    if not manifests:
        return ''
    lines = ['## The annotators', '',
             'Both are DeepLabV3+ on ImageNet-pretrained EfficientNet-Lite0 trained on the 171 '
             'Seq05VD frames of CamVid test only (`tools/train_camvid_annotator.py`; no train, '
             'val or selection image), then applied to CamVid train: a real model with a real '
             'domain gap (other streets, other light), in the paper\'s regime of a strong but '
             'shifted annotator. Their probabilities of every class are cached. Measured on '
             'the 367 CamVid train images (the labeled and unlabeled images of every split):',
             '', '| annotator | mIoU % | pixel acc. % | top-1 / 2 / 3 / 5 coverage % | ECE % |',
             '|---|---|---|---|---|']
    classes = None
    for group, m in manifests.items():
        ev = m.get('evaluation') or {}
        cov = ev.get('top_k_coverage') or {}
        cov_text = ' / '.join('-' if cov.get(str(k)) is None else f'{100 * cov[str(k)]:.1f}'
                              for k in (1, 2, 3, 5))
        lines.append(f"| {group}: {DESCRIPTIONS.get(group, '')} | {_pct(ev.get('mIoU'))} | "
                     f"{_pct(ev.get('aAcc'))} | {cov_text} | {_pct(ev.get('ece'))} |")
        classes = classes or list((ev.get('per_class_IoU') or {}))
    if classes:
        lines += ['', 'Per-class IoU (%):', '',
                  '| annotator | ' + ' | '.join(classes) + ' |',
                  '|---|' + '---|' * len(classes)]
        for group, m in manifests.items():
            iou = (m.get('evaluation') or {}).get('per_class_IoU') or {}
            lines.append(f'| {group} | ' + ' | '.join(_pct(iou.get(c)) for c in classes) + ' |')
    for group, m in manifests.items():
        png = osp.join(REPO, _work_dir(m.get('command') or ''), 'reliability.png')
        if osp.exists(png):
            name = f'camvid_reliability_{group}.png'
            shutil.copyfile(png, osp.join(out_dir, name))
            lines += ['', f'![reliability diagram, {group} annotator]({name})']
    weights = {g: m.get('model') or {} for g, m in manifests.items()}
    lines += ['', 'The weights every cache is made from, kept in the repository, and their sha1 '
              "(each run's result names the sha1 of the weights it read; a result made from "
              'other weights is trained again): '
              + '; '.join(f"{g} `{w.get('checkpoint')}` ({(w.get('checkpoint_sha1') or '?')[:12]})"
                          for g, w in weights.items()) + '.']
    lines += ['', 'Remake: ' + '; '.join(f"`{m.get('command')}`" for m in manifests.values())]
    return '\n'.join(lines)


def _work_dir(command):
    """The ``--work-dir`` of the command that made a cache (where its reliability.png is)."""
    parts = shlex.split(command)
    return parts[parts.index('--work-dir') + 1] if '--work-dir' in parts else ''


def _pct(x):
    return '-' if x is None else f'{100 * x:.1f}'
