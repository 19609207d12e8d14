"""What the CamVid benchmark's runs read: the data, the labeled splits, the selection set and
the two annotators' caches, each made when it is missing (run.py's steps 1 and 2)."""
import os
import os.path as osp
import subprocess
import sys
import time

import plan
from training import REPO, SELECTION_FILE

sys.path.insert(0, osp.join(REPO, 'tools'))
from train_camvid_annotator import file_sha1  # noqa: E402  (the sha1 the manifest records)

SPLITS = ('1-16', '1-8', '1-4')
DATA = osp.join(REPO, 'data')
CAMVID = osp.join(DATA, 'camvid')
SHARED_CAMVID = osp.join(osp.dirname(REPO), 'shared', 'data', 'camvid')


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)


def check_camvid():
    if not osp.lexists(CAMVID) and osp.isdir(SHARED_CAMVID):
        os.makedirs(DATA, exist_ok=True)
        os.symlink(osp.relpath(SHARED_CAMVID, DATA), CAMVID)
        log(f'linked {CAMVID} -> {SHARED_CAMVID}')
    for sub in ('images/train', 'labels/train', 'images/val', 'labels/val'):
        if not osp.isdir(osp.join(CAMVID, sub)):
            raise FileNotFoundError(
                f'CamVid is missing: no folder {osp.join(CAMVID, sub)}. Link the prepared copy '
                f'(ln -s ../../shared/data/camvid {CAMVID}) or convert the original release '
                'with tools/prepare_camvid.py (docs/datasets.md).')


def make_splits():
    missing = [s for s in SPLITS
               if not osp.exists(osp.join(DATA, 'splits', 'camvid', s, 'unlabeled.txt'))]
    if missing:
        call([osp.join(REPO, 'tools', 'make_splits.py'), 'random', '--img-dir',
               osp.join(CAMVID, 'images', 'train'), '--suffix', '.jpg', '--fraction', '1/16',
               '1/8', '1/4', '--seed', '0', '--out-dir', osp.join(DATA, 'splits', 'camvid')])


SELECTION_SEQUENCE = '0001TP'


def make_selection():
    """The selection set: the 0001TP frames of CamVid test (62). Every choice of the benchmark
    (length, thresholds, alphas) reads it; val (0016E5) gives the final numbers and no choice."""
    path = osp.join(DATA, SELECTION_FILE)
    if osp.exists(path):
        return path
    stems = sorted(osp.splitext(f)[0] for f in os.listdir(osp.join(CAMVID, 'images', 'test'))
                   if f.startswith(SELECTION_SEQUENCE) and f.endswith('.jpg'))
    if not stems:
        raise FileNotFoundError(f'no {SELECTION_SEQUENCE}*.jpg in {CAMVID}/images/test: the '
                                'selection set is the 0001TP frames of CamVid test')
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        f.write('\n'.join(stems) + '\n')
    os.replace(path + '.tmp', path)
    log(f'selection set: {len(stems)} {SELECTION_SEQUENCE} frames of test -> {path}')
    return path


def split_stems(split):
    d = osp.join(DATA, 'splits', 'camvid', split)
    return tuple(open(osp.join(d, f'{w}.txt')).read().split() for w in ('labeled', 'unlabeled'))


NUM_CLASSES = 11
# the commands that make the two annotators' caches (docs/annotators.md)
ANNOTATOR_COMMANDS = {
    'weak': ['--work-dir', 'work_dirs/camvid_cross_sequence_annotator', '--iters', '500',
             '--crop', '128', '--batch-size', '8', '--seed', '0', '--lr', '0.005'],
    'strong': ['--work-dir', 'work_dirs/camvid_cross_sequence_annotator_full', '--iters', '900',
               '--crop', '256', '--batch-size', '8', '--scale', 'full', '--flip', '--seed', '0',
               '--lr', '0.005'],
}


def make_annotators(groups=None):
    """The annotators' caches (``groups``, default both), made from the weights kept in the
    repository (plan.ANNOTATOR_WEIGHTS; trained, and then kept there, where they are
    missing); returns {group: seconds it took (0 if it existed)}."""
    seconds = {}
    for group in groups or plan.ANNOTATORS:
        cache = osp.join(REPO, plan.ANNOTATORS[group])
        seconds[group] = 0.0
        from conformalsam_mmseg.annotators.cache import read_manifest
        manifest = read_manifest(cache) or {}
        made_by = (manifest.get('model') or {}).get('checkpoint_sha1')
        pinned = annotator_identity(group)
        if manifest.get('topk') == NUM_CLASSES and pinned and made_by == pinned:
            continue
        # missing, cached with fewer classes than CamVid's 11 or from other weights: (re)make
        # it; without kept weights the tool trains (reusing a finished training with the same
        # settings, resuming a stopped one) and keeps them
        log(f'the {group} cross-sequence annotator (Seq05VD only): '
            + ('caching from its kept weights' if pinned else 'training and caching'))
        start = time.perf_counter()
        call([osp.join(REPO, 'tools', 'train_camvid_annotator.py'), '--data-root', CAMVID,
              '--out', cache] + ANNOTATOR_COMMANDS[group]
             + ['--weights', plan.ANNOTATOR_WEIGHTS[group]] + (['--overwrite'] if manifest else []))
        seconds[group] = time.perf_counter() - start
    return seconds


def annotator_identity(group):
    """The sha1 of the group's kept weights (None while they are not made): what the results
    of the group's runs carry, and what makes a result of other weights stale."""
    path = osp.join(REPO, plan.ANNOTATOR_WEIGHTS[group])
    return file_sha1(path) if osp.exists(path) else None


def annotator_identities():
    return {g: annotator_identity(g) for g in plan.ANNOTATORS}


def call(cmd):
    proc = subprocess.run([sys.executable] + cmd, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f'failed ({proc.returncode}): {" ".join(cmd)}')


def cache_source(group):
    import quality
    from conformalsam_mmseg.annotators.cache import AnnotatorCache
    from conformalsam_mmseg.datasets.camvid import CamVidDataset
    classes = CamVidDataset.METAINFO['classes']
    images, labels = (osp.join(CAMVID, d, 'train') for d in ('images', 'labels'))
    cache = AnnotatorCache(osp.join(REPO, plan.ANNOTATORS[group]), num_classes=len(classes),
                           class_names=classes)
    return quality.cache_source(cache, images, labels, len(classes))


def cache_fingerprint(group):
    """The command that made the group's cache and the sha1 of the weights it was made from
    (None when it is not made): results derived from a cache carry it, and are recomputed when
    the cache was remade differently."""
    from conformalsam_mmseg.annotators.cache import read_manifest
    manifest = read_manifest(osp.join(REPO, plan.ANNOTATORS[group])) or {}
    if not manifest.get('command'):
        return None
    sha1 = (manifest.get('model') or {}).get('checkpoint_sha1')
    return f"{manifest['command']} (weights sha1 {sha1})"


def cache_size(path):
    from conformalsam_mmseg.annotators.cache import read_manifest
    files = [f for f in os.listdir(path) if f != 'cache_info.json']
    size = sum(osp.getsize(osp.join(path, f)) for f in files)
    manifest = read_manifest(path) or {}
    return dict(bytes=size, entries=len(files), codec=manifest.get('codec'),
                topk=manifest.get('topk'))
