"""The cross-sequence CamVid annotator: train on Seq05VD, cache its probabilities on CamVid train.

  python tools/train_camvid_annotator.py [--data-root data/camvid] [--iters 500] [--crop 128] \\
      [--batch-size 8] [--lr 0.005] [--scale half|full] [--flip] \\
      [--work-dir work_dirs/camvid_cross_sequence_annotator] \\
      [--out data/annotator_cache/camvid_cross_sequence] [--topk K]

CamVid's test split holds two video sequences: 0001TP (which is also in train) and Seq05VD
(171 frames, in no other split). A segmentor trained on the Seq05VD frames alone and applied
to the train sequences (0001TP, 0006R0, 0016E5) is an annotator whose errors come from a real
model and a real domain gap (other streets, other light), unlike the SimulatedAnnotator.

Three steps:

1. train: the config's segmentor (default: DeepLabV3+ on ImageNet-pretrained
   EfficientNet-Lite0, configs/supervised/deeplabv3plus_effl0_camvid-1-8.py) with an mmengine
   Runner on the Seq05VD frames of images/test only (selected by the file-name prefix
   ``Seq05VD``; the tool checks that no training image comes from a train or val sequence).
   ``--scale half`` keeps the config's resize to half resolution (240 x 180); ``--scale full``
   drops it and trains (and exports) at the original 480 x 360. Skipped when the work dir
   already holds the final checkpoint of a run with the same settings (``--retrain`` trains
   again; other settings are refused).
2. export: for every image of images/train (367: labeled and unlabeled images of every split
   are among them, and calibration reads the labeled ones), the config's test pipeline (at the
   ``--scale``), the model's logits upsampled bilinearly to the original 480 x 360, softmax
   (``--flip``: the mean of the softmax of the image and of its horizontal mirror, mirrored
   back; on the GPU when there is one), written as a cache entry (every class by default,
   ``--topk K`` keeps the top K; ``write_entry``: atomic) plus the manifest
   ``cache_info.json`` holding the command that remakes the cache. Resumable: valid entries
   are skipped (``--overwrite`` remakes them). A cache made by a different checkpoint or with
   another ``--flip`` is refused unless ``--overwrite``.
3. evaluate: on CamVid train against the ground truth, 255 ignored: the annotator's argmax
   (the cached top-1 class): mIoU and per-class IoU; top-k coverage of the true class
   (k = 1, 2, 3, 5); the expected calibration error of the top-1 probability over 15
   equal-width confidence bins, and its reliability diagram WORK_DIR/reliability.png. Printed
   and written to WORK_DIR/annotator_eval.json (and into the manifest).

``--weights FILE`` pins the annotator: the first call trains and writes the final weights to
FILE, every later call (on any machine) exports from FILE instead of training, so the cache
comes from the same network even where training would not repeat bit for bit.

The ConformalSAM CamVid configs read the cache from data/annotator_cache/camvid_cross_sequence
(configs/_base_/conformalsam_camvid.py). See docs/annotators.md.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shlex
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = 'configs/supervised/deeplabv3plus_effl0_camvid-1-8.py'
DEFAULT_OUT = 'data/annotator_cache/camvid_cross_sequence'
DEFAULT_WORK_DIR = 'work_dirs/camvid_cross_sequence_annotator'
ANNOTATOR_NAME = 'CamVidCrossSequenceAnnotator'
TRAIN_SEQUENCE = 'Seq05VD'
IMAGE_SUFFIX = '.jpg'
LABEL_SUFFIX = '.png'
EVAL_FILE = 'annotator_eval.json'
STEMS_FILE = 'seq05vd_train_stems.txt'
PARTIAL_SETTINGS_FILE = 'train_settings.partial.json'   # the settings of a run under way
RESUME_INTERVAL = 100
SETTINGS_FILE = 'train_settings.json'
RELIABILITY_FILE = 'reliability.png'
SCALES = ('half', 'full')
COVERAGE_KS = (1, 2, 3, 5)
ECE_BINS = 15


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='train_camvid_annotator.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='segmentor config (default: %(default)s)')
    parser.add_argument('--data-root', default='data/camvid',
                        help='CamVid folder with images/ and labels/ {train,val,test} '
                        '(default: %(default)s; make it with ln -s or tools/prepare_camvid.py)')
    parser.add_argument('--work-dir', default=DEFAULT_WORK_DIR,
                        help='logs, checkpoint and evaluation (default: %(default)s)')
    parser.add_argument('--out', default=DEFAULT_OUT, metavar='DIR',
                        help='the cache folder (default: %(default)s)')
    parser.add_argument('--iters', type=int, default=500,
                        help='training iterations (default: %(default)s)')
    parser.add_argument('--crop', type=int, default=128,
                        help='square training crop, at the --scale (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=8, help='(default: %(default)s)')
    parser.add_argument('--lr', type=float, default=0.005,
                        help='base learning rate, the decode head\'s x10, poly decay to 0 '
                        '(default: %(default)s, UniMatch\'s Cityscapes value: a short '
                        'schedule; the config\'s 0.001 is for its 2,000 iterations)')
    parser.add_argument('--scale', choices=SCALES, default='half',
                        help='half: the config\'s resize to 240 x 180 for training and export; '
                        'full: no resize, the original 480 x 360 (the cache is at 480 x 360 '
                        'either way; default: %(default)s)')
    parser.add_argument('--flip', action='store_true',
                        help='export the mean of the softmax of each image and of its '
                        'horizontal mirror (twice the export time)')
    parser.add_argument('--num-workers', type=int, default=1,
                        help='training data loader workers (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='(default: %(default)s)')
    parser.add_argument('--topk', type=int, default=None, metavar='K',
                        help='classes stored per pixel (default: all 11; a true class outside '
                        'a top-K cache gets the conformal score 1)')
    parser.add_argument('--codec', choices=('zlib', 'none'), default='none',
                        help='cache payload compression (default: %(default)s, 2 x 11 bytes '
                        'per pixel, 3.8 MB per image with every class; docs/annotators.md, '
                        '"Loading speed on CamVid")')
    parser.add_argument('--export-batch', type=int, default=4,
                        help='images per forward pass when exporting (default: %(default)s)')
    parser.add_argument('--max-train-images', type=int, default=None, metavar='N',
                        help='train on N Seq05VD frames (evenly spaced), for tests')
    parser.add_argument('--max-export-images', type=int, default=None, metavar='N',
                        help='export and evaluate the first N train images only, for tests')
    parser.add_argument('--weights', default=None, metavar='FILE',
                        help='pin the annotator to FILE: when FILE exists nothing trains and '
                        'the export is made from it (its training settings must be the ones '
                        'given); otherwise the training writes its final weights (the state '
                        'dict and the settings) to FILE, and the export is made from them. The '
                        'manifest records FILE and its sha1, so a cache remade from FILE on '
                        'another machine comes from the same network')
    parser.add_argument('--retrain', action='store_true',
                        help='train even if the work dir holds this run\'s final checkpoint')
    parser.add_argument('--overwrite', action='store_true',
                        help='remake cache entries that exist and are valid')
    parser.add_argument('--log-interval', type=int, default=50, help='(default: %(default)s)')
    return parser.parse_args(argv)


def remake_command(args):
    """The command line that remakes the cache (for the manifest and error messages)."""
    parts = ['python', 'tools/train_camvid_annotator.py', '--data-root', args.data_root,
             '--work-dir', args.work_dir, '--out', args.out, '--iters', str(args.iters),
             '--crop', str(args.crop), '--batch-size', str(args.batch_size),
             '--scale', args.scale]
    if args.flip:
        parts += ['--flip']
    if args.topk is not None:
        parts += ['--topk', str(args.topk)]
    parts += ['--seed', str(args.seed)]
    if args.config != DEFAULT_CONFIG:
        parts += ['--config', args.config]
    parts += ['--lr', str(args.lr)]
    if args.weights is not None:
        parts += ['--weights', args.weights]
    if args.codec != 'none':
        parts += ['--codec', args.codec]
    if args.max_train_images is not None:
        parts += ['--max-train-images', str(args.max_train_images)]
    if args.max_export_images is not None:
        parts += ['--max-export-images', str(args.max_export_images)]
    return shlex.join(parts)


# --- which images -----------------------------------------------------------------------
def list_stems(data_root, split):
    folder = osp.join(data_root, 'images', split)
    if not osp.isdir(folder):
        raise SystemExit(f'error: {folder} does not exist; --data-root must be the CamVid folder '
                         'with images/{train,val,test} and labels/{train,val,test} '
                         '(tools/prepare_camvid.py, or ln -s to a prepared copy)')
    return sorted(osp.splitext(n)[0] for n in os.listdir(folder) if n.endswith(IMAGE_SUFFIX))


def sequence_of(stem):
    """CamVid's video sequence of a frame: the file-name prefix (``Seq05VD_f00000`` ->
    ``Seq05VD``, ``0001TP_006690`` -> ``0001TP``)."""
    return stem.split('_', 1)[0]


def select_train_stems(data_root, max_images=None):
    """The Seq05VD frames of the test split (all, or ``max_images`` evenly spaced ones).

    Raises when any of them belongs to a sequence that also appears in train or val, or shares
    a stem with a train or val image: the annotator must never see the images it labels.
    """
    stems = [s for s in list_stems(data_root, 'test') if s.startswith(TRAIN_SEQUENCE)]
    if not stems:
        raise SystemExit(f'error: no {TRAIN_SEQUENCE} frame in {data_root}/images/test')
    if max_images is not None and max_images < len(stems):
        if max_images < 1:
            raise SystemExit('error: --max-train-images must be >= 1')
        step = len(stems) / max_images
        stems = [stems[int(i * step)] for i in range(max_images)]
    check_cross_sequence(stems, data_root)
    return stems


def check_cross_sequence(stems, data_root):
    held = set()
    for split in ('train', 'val'):
        if osp.isdir(osp.join(data_root, 'images', split)):
            held.update(list_stems(data_root, split))
    held_sequences = {sequence_of(s) for s in held}
    bad = [s for s in stems if not s.startswith(TRAIN_SEQUENCE) or s in held
           or sequence_of(s) in held_sequences]
    assert not bad, (f'training stems from the train/val sequences {sorted(held_sequences)}: '
                     f'{bad[:5]}')


# --- training ---------------------------------------------------------------------------
def scaled_pipeline(pipeline, scale):
    """A copy of ``pipeline`` at ``scale``: 'half' keeps the config's steps (its ``Resize`` to
    240 x 180), 'full' drops every ``Resize`` step, so images keep their original size
    (RandomRescale, being relative to the image's own size, stays)."""
    if scale not in SCALES:
        raise ValueError(f'scale must be one of {SCALES}, got {scale!r}')
    return [dict(step) for step in pipeline if scale == 'half' or step['type'] != 'Resize']


def train_settings(args, stems):
    """What the checkpoint depends on: a checkpoint in the work dir is reused only for these."""
    return dict(config=args.config, iters=args.iters, crop=args.crop,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, scale=args.scale,
                stems=list(stems))


def build_config(args, stems_file):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config if osp.isabs(args.config) or osp.exists(args.config)
                          else osp.join(REPO, args.config))
    cfg.work_dir = args.work_dir
    crop = (args.crop, args.crop)
    cfg.model.data_preprocessor.size = crop
    loader = cfg.train_dataloader
    loader.batch_size = args.batch_size
    loader.num_workers = args.num_workers
    loader.persistent_workers = args.num_workers > 0
    ds = loader.dataset
    ds.data_root = osp.abspath(args.data_root)
    ds.data_prefix = dict(img_path='images/test', seg_map_path='labels/test')
    ds.ann_file = osp.abspath(stems_file)
    ds.pipeline = scaled_pipeline(ds.pipeline, args.scale)
    cfg.test_pipeline = scaled_pipeline(cfg.test_pipeline, args.scale)
    for step in ds.pipeline:
        if step['type'] == 'RandomCrop':
            step['crop_size'] = crop
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters,
                         val_interval=args.iters + 1)
    # no validation: Seq05VD has no held-out frames, and CamVid train is what it will label
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    # a checkpoint every RESUME_INTERVAL iterations (the last one kept): a run stopped on the
    # way resumes from it (``train``)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=min(args.iters, RESUME_INTERVAL),
                                        max_keep_ckpts=1, save_best=None)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=args.log_interval,
                                    log_metric_by_epoch=False)
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.optim_wrapper.optimizer.lr = args.lr
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    cfg.randomness = dict(seed=args.seed)
    cfg.launcher = 'none'
    cfg.resume = False
    cfg.load_from = None
    return cfg


def train(args, stems):
    """Train on ``stems`` (unless the final checkpoint exists); returns (checkpoint, config,
    seconds spent training or None when skipped)."""
    from mmengine.runner import Runner
    os.makedirs(args.work_dir, exist_ok=True)
    stems_file = osp.join(args.work_dir, STEMS_FILE)
    checkpoint = osp.join(args.work_dir, f'iter_{args.iters}.pth')
    cfg = build_config(args, stems_file)
    settings_file = osp.join(args.work_dir, SETTINGS_FILE)
    settings = train_settings(args, stems)
    if osp.isfile(checkpoint) and not args.retrain:
        used = _read_lines(stems_file) if osp.isfile(stems_file) else None
        if used != stems:
            raise SystemExit(
                f'error: {checkpoint} was trained on other images than the ones selected now '
                f'({stems_file}); pass --retrain or another --work-dir')
        if osp.isfile(settings_file):
            with open(settings_file) as f:
                before = json.load(f)
        else:  # a checkpoint from before the settings were recorded: half scale, the rest
            before = dict(settings, scale='half')  # as given (iter_N.pth names the iters)
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            raise SystemExit(
                f'error: {checkpoint} was trained with other settings ('
                + ', '.join(f'{k}: {before.get(k)!r} then, {settings[k]!r} now'
                            for k in changed if k != 'stems')
                + f'; {settings_file}); pass --retrain or another --work-dir')
        print(f'{checkpoint} exists: not training again (--retrain to train)', flush=True)
        return checkpoint, cfg, None
    partial_file = osp.join(args.work_dir, PARTIAL_SETTINGS_FILE)
    if (not args.retrain and osp.isfile(osp.join(args.work_dir, 'last_checkpoint'))
            and osp.isfile(partial_file) and json.load(open(partial_file)) == settings):
        cfg.resume = True   # a run with these settings stopped on the way: go on from it
        print(f'resuming the stopped training in {args.work_dir}', flush=True)
    with open(stems_file, 'w') as f:
        f.write(''.join(s + '\n' for s in stems))
    if osp.isfile(settings_file):
        os.remove(settings_file)  # written again once this run's checkpoint exists
    with open(partial_file, 'w') as f:
        json.dump(settings, f, indent=2)
    runner = Runner.from_cfg(cfg)
    used = [osp.splitext(osp.basename(runner.train_dataloader.dataset.get_data_info(i)[
        'img_path']))[0] for i in range(len(runner.train_dataloader.dataset))]
    check_cross_sequence(used, args.data_root)
    assert sorted(used) == sorted(stems), 'the training set is not the selected Seq05VD frames'
    start = time.time()
    runner.train()
    seconds = time.time() - start
    del runner
    if not osp.isfile(checkpoint):
        raise SystemExit(f'error: training did not write {checkpoint}')
    with open(settings_file, 'w') as f:
        json.dump(settings, f, indent=2)
    return checkpoint, cfg, seconds


def pin_weights(checkpoint, path, settings):
    """Write the final checkpoint's state dict and the settings it was trained with to
    ``path`` (``--weights``); returns ``path``."""
    import torch
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save(dict(state_dict=state, meta=dict(train_settings=settings)), path + '.tmp')
    os.replace(path + '.tmp', path)
    return path


def pinned_weights(args, stems):
    """``--weights`` when it exists (the settings it was trained with checked against the
    given ones), else None."""
    if not args.weights or not osp.isfile(args.weights):
        return None
    import torch
    meta = torch.load(args.weights, map_location='cpu', weights_only=False).get('meta') or {}
    before, now = meta.get('train_settings') or {}, train_settings(args, stems)
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        diff = [f'{k}: {before.get(k)!r} then, {now[k]!r} now' for k in changed if k != 'stems']
        diff += ['other Seq05VD frames'] if 'stems' in changed else []
        raise SystemExit(f'error: {args.weights} was trained with other settings ('
                         + ', '.join(diff) + '); give those settings, or another --weights '
                         'file to train a new annotator')
    print(f'{args.weights} exists: exporting from it, not training', flush=True)
    return args.weights


def _read_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def file_sha1(path, chunk=1 << 20):
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


# --- export -----------------------------------------------------------------------------
def load_model(cfg, checkpoint, device='cpu'):
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.to(device).eval()


def export_pipeline(cfg):
    """The config's test pipeline without its label loading (``build_config`` has set it to
    the ``--scale``: the half-resolution resize, or no resize)."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    steps = [dict(s) for s in cfg.test_pipeline
             if not s['type'].startswith('LoadCheckedAnnotations')
             and s['type'] != 'LoadAnnotations']
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose(steps)


def predict_probs(model, pipeline, img_paths, flip=False):
    """(B, K, H, W) float32 softmax probabilities at each image's original size (all the
    images must have one size): the model runs on the pipeline's (resized) input, its logits
    are upsampled bilinearly to the original size as mmseg's predict does, then softmax.

    ``flip``: the mean of that softmax and of the softmax of the horizontally mirrored input,
    mirrored back (bilinear upsampling commutes with the mirror)."""
    import copy

    from mmengine.dataset import pseudo_collate
    batch = pseudo_collate([pipeline(dict(img_path=p)) for p in img_paths])
    probs = _softmax_of(model, batch)
    if flip:
        mirrored = dict(batch, inputs=[x.flip(-1) for x in batch['inputs']])
        if 'data_samples' in batch:  # test_step writes its results into the samples
            mirrored['data_samples'] = copy.deepcopy(batch['data_samples'])
        probs = (probs + _softmax_of(model, mirrored).flip(-1)) / 2
    return probs


def _softmax_of(model, batch):
    import torch
    with torch.no_grad():
        samples = model.test_step(batch)
    logits = torch.stack([s.seg_logits.data for s in samples])
    return logits.float().softmax(dim=1).cpu()


def export(args, model, cfg, classes, stems, command, model_info):
    """Write the cache entries of ``stems`` (images/train); returns (written, skipped)."""
    from tqdm import tqdm

    from conformalsam_mmseg.annotators import AnnotatorCache, write_entry
    from conformalsam_mmseg.annotators.cache import read_manifest, write_manifest
    os.makedirs(args.out, exist_ok=True)
    old = read_manifest(args.out) or {}
    old_model = (old.get('model') or {}).get('checkpoint_sha1')
    has_entries = any(n.endswith('.topk') for n in os.listdir(args.out))
    if (old_model and old_model != model_info['checkpoint_sha1'] and not args.overwrite
            and has_entries):
        raise SystemExit(
            f'error: the cache {args.out} was made by another checkpoint ({old_model[:12]}, now '
            f'{model_info["checkpoint_sha1"][:12]}); pass --overwrite to remake it, or --out '
            'another folder')
    if old_model and bool(old.get('flip')) != args.flip and not args.overwrite and has_entries:
        raise SystemExit(
            f'error: the cache {args.out} was made {"with" if old.get("flip") else "without"} '
            f'--flip, this run is {"with" if args.flip else "without"} it; pass --overwrite to '
            'remake it, or --out another folder')
    write_manifest(args.out, dict(
        command=command, config=args.config, split='train', annotator=ANNOTATOR_NAME,
        annotator_cfg=f'{ANNOTATOR_NAME}(trained on CamVid test {TRAIN_SEQUENCE} frames)',
        topk=args.topk, codec=args.codec, classes=list(classes), num_images=len(stems),
        scale=args.scale, flip=args.flip, model=model_info))
    cache = AnnotatorCache(args.out, num_classes=len(classes), class_names=classes,
                           annotator=ANNOTATOR_NAME, topk=args.topk)
    img_dir = osp.join(args.data_root, 'images', 'train')
    pipeline = export_pipeline(cfg)
    todo, skipped = [], 0
    for stem in stems:
        if not args.overwrite and _entry_matches_image(
                cache, stem, osp.join(img_dir, stem + IMAGE_SUFFIX)):
            skipped += 1
        else:
            todo.append(stem)
    written = 0
    bar = tqdm(total=len(stems), initial=skipped, desc='exporting CamVid train', unit='img',
               dynamic_ncols=True, file=sys.stderr)
    # batches of images of one size (CamVid's are all 480 x 360)
    for start in range(0, len(todo), max(1, args.export_batch)):
        chunk = todo[start:start + max(1, args.export_batch)]
        groups = {}
        for stem in chunk:
            groups.setdefault(_image_size(osp.join(img_dir, stem + IMAGE_SUFFIX)),
                              []).append(stem)
        for group in groups.values():
            probs = predict_probs(model, pipeline,
                                  [osp.join(img_dir, s + IMAGE_SUFFIX) for s in group],
                                  flip=args.flip)
            for stem, p in zip(group, probs):
                write_entry(args.out, p, stem=stem, class_names=classes,
                            annotator=ANNOTATOR_NAME, topk=args.topk, codec=args.codec)
                written += 1
                bar.update(1)
    bar.close()
    return written, skipped


def _image_size(path):
    from PIL import Image
    with Image.open(path) as img:
        w, h = img.size
    return h, w


def _entry_matches_image(cache, stem, img_path):
    h, w = _image_size(img_path)
    return cache.is_valid(stem, height=h, width=w)


# --- evaluation -------------------------------------------------------------------------
def confidence_bin(prob_u8, num_bins=ECE_BINS):
    """Bin of quantised confidences ``v`` (uint8, p = v / 255) among ``num_bins`` equal-width
    bins (i / n, (i + 1) / n], 0 in the first; integer arithmetic, so a confidence on an edge
    (v / 255 = i / n exactly) goes to the lower bin as the interval says."""
    import numpy as np
    v = np.asarray(prob_u8).astype(np.int64)
    return np.maximum((v * num_bins + 254) // 255 - 1, 0)


class AnnotatorStats:
    """Accumulates, over images, what the evaluation reports from cache entries: the confusion
    matrix of the top-1 class, top-k coverage of the true class and the per-bin sums of the
    reliability diagram (top-1 confidence against top-1 accuracy)."""

    def __init__(self, num_classes, ks=COVERAGE_KS, num_bins=ECE_BINS):
        import numpy as np
        self.num_classes = num_classes
        self.ks = tuple(ks)
        self.num_bins = num_bins
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.covered = np.zeros(len(self.ks), np.int64)
        self.bin_pixels = np.zeros(num_bins, np.int64)
        self.bin_confidence = np.zeros(num_bins, np.int64)  # sums of v (p = v / 255)
        self.bin_correct = np.zeros(num_bins, np.int64)
        self.cached_topk = None  # the smallest k of the entries seen

    def update(self, index, prob, gt, ignore_index=255):
        """``index``, ``prob``: an entry's (k, H, W) uint8 classes and probabilities by rank,
        ``gt``: (H, W) labels."""
        import numpy as np
        k = index.shape[0]
        self.cached_topk = k if self.cached_topk is None else min(self.cached_topk, k)
        valid = gt != ignore_index
        truth = gt[valid].astype(np.int64)
        ranks = index[:, valid].astype(np.int64)  # (k, N)
        hit = ranks == truth
        found = np.cumsum(hit, axis=0) > 0  # row j: the truth is among the top j + 1
        for i, top in enumerate(self.ks):
            if top <= k:
                self.covered[i] += int(found[top - 1].sum())
        pred = ranks[0]
        self.confusion += np.bincount(truth * self.num_classes + pred,
                                      minlength=self.num_classes ** 2).reshape(
                                          self.num_classes, self.num_classes)
        conf = prob[0][valid].astype(np.int64)
        bins = confidence_bin(conf, self.num_bins)
        n = self.num_bins
        self.bin_pixels += np.bincount(bins, minlength=n)
        self.bin_confidence += np.bincount(bins, weights=conf, minlength=n).astype(np.int64)
        self.bin_correct += np.bincount(bins, weights=hit[0].astype(np.float64),
                                        minlength=n).astype(np.int64)

    @property
    def labeled(self):
        return int(self.bin_pixels.sum())

    def coverage(self):
        """{k: fraction of labeled pixels whose true class is among the k most probable};
        None for a k above the cached top-k (unknown from the cache)."""
        total = max(self.labeled, 1)
        return {str(top): (float(self.covered[i]) / total
                           if self.cached_topk is not None and top <= self.cached_topk
                           else None)
                for i, top in enumerate(self.ks)}

    def reliability(self):
        """Per bin: its edges, labeled pixels, mean confidence and accuracy (None if empty)."""
        rows = []
        for i in range(self.num_bins):
            n = int(self.bin_pixels[i])
            rows.append(dict(
                lower=i / self.num_bins, upper=(i + 1) / self.num_bins, pixels=n,
                confidence=float(self.bin_confidence[i]) / 255 / n if n else None,
                accuracy=float(self.bin_correct[i]) / n if n else None))
        return rows

    def ece(self):
        """Expected calibration error: sum over bins of (pixels / all) * |accuracy - mean
        confidence| (the cached, quantised top-1 probabilities)."""
        total = self.labeled
        if not total:
            return None
        return float(sum(r['pixels'] / total * abs(r['accuracy'] - r['confidence'])
                         for r in self.reliability() if r['pixels']))


def evaluate(args, classes, stems):
    """The cached annotator against the ground truth of CamVid train: IoU of the top-1 class,
    top-k coverage, ECE and the reliability bins (see :class:`AnnotatorStats`)."""
    import mmcv

    from conformalsam_mmseg.annotators import AnnotatorCache
    cache = AnnotatorCache(args.out, num_classes=len(classes), class_names=classes,
                           annotator=ANNOTATOR_NAME)
    stats = AnnotatorStats(len(classes))
    for stem in stems:
        gt = mmcv.imread(osp.join(args.data_root, 'labels', 'train', stem + LABEL_SUFFIX),
                         'unchanged')
        entry = cache.load(stem, height=gt.shape[0], width=gt.shape[1])
        stats.update(entry.index, entry.prob, gt)
    return summarize(stats, classes, len(stems))


def summarize(stats, classes, num_images):
    result = iou_from_confusion(stats.confusion, classes, num_images)
    result.update(
        top_k_coverage=stats.coverage(), ece=stats.ece(), ece_bins=stats.num_bins,
        reliability=stats.reliability(), cached_topk=stats.cached_topk,
        coverage_note='fraction of labeled pixels whose true class is among the k most '
        'probable cached classes (None: k above the cached top-k)',
        ece_note=f'expected calibration error of the cached top-1 probability, '
        f'{stats.num_bins} equal-width bins (i/n, (i+1)/n]: sum over bins of pixels/all * '
        '|accuracy - mean confidence|')
    return result


def iou_from_confusion(confusion, classes, num_images):
    import numpy as np
    inter = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = inter / union
    per_class = {c: (None if np.isnan(v) else float(v)) for c, v in zip(classes, iou)}
    return dict(mIoU=float(np.nanmean(iou)) if np.isfinite(iou).any() else None,
                aAcc=float(inter.sum() / max(confusion.sum(), 1)), per_class_IoU=per_class,
                num_images=num_images, labeled_pixels=int(confusion.sum()),
                note='argmax of the cached top-1 class vs CamVid train ground truth, '
                'void (255) ignored; mIoU = mean over classes with a non-empty union')


def plot_reliability(result, path, title=None):
    """The reliability diagram: accuracy against confidence per bin (bars, the diagonal is
    perfect calibration), with each bin's labeled-pixel count, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = result['reliability']
    width = rows[0]['upper'] - rows[0]['lower']
    centers = [(r['lower'] + r['upper']) / 2 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                      gridspec_kw=dict(height_ratios=(3, 1.3)))
    full = [(c, r) for c, r in zip(centers, rows) if r['pixels']]
    top.bar([c for c, _ in full], [r['accuracy'] for _, r in full], width=width * 0.9,
            color='#4c72b0', edgecolor='black', linewidth=0.5, label='accuracy')
    top.plot([r['confidence'] for _, r in full], [r['accuracy'] for _, r in full], 'o',
             color='#dd8452', markersize=4, label='(mean confidence, accuracy)')
    top.plot([0, 1], [0, 1], '--', color='grey', linewidth=1, label='perfect calibration')
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel('accuracy of the top-1 class')
    ece = result.get('ece')
    top.set_title((title or 'reliability') + (f' (ECE {100 * ece:.2f}%)' if ece is not None
                                              else ''), fontsize=10)
    top.legend(loc='upper left', fontsize=8)
    counts = [r['pixels'] for r in rows]
    bottom.bar(centers, counts, width=width * 0.9, color='#8c8c8c',
               edgecolor='black', linewidth=0.5)
    bottom.set_yscale('log' if any(counts) else 'linear')
    for c, n in zip(centers, counts):
        if n:
            bottom.text(c, n, f'{n:.2g}' if n >= 1000 else str(n), ha='center',
                        va='bottom', fontsize=6, rotation=90)
    bottom.set_ylabel('labeled pixels')
    bottom.set_xlabel(f'confidence (top-1 probability), {len(rows)} bins')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_eval(result):
    lines = [f'cross-sequence annotator on CamVid train ({result["num_images"]} images): '
             f'mIoU {100 * result["mIoU"]:.2f}, aAcc {100 * result["aAcc"]:.2f}']
    width = max(len(c) for c in result['per_class_IoU'])
    for c, v in result['per_class_IoU'].items():
        lines.append(f'  {c:<{width}}  ' + ('   n/a' if v is None else f'{100 * v:6.2f}'))
    if 'top_k_coverage' in result:
        lines.append('  true class in the top k: ' + ', '.join(
            f'k={k} ' + ('n/a' if v is None else f'{100 * v:.2f}%')
            for k, v in result['top_k_coverage'].items()))
    if result.get('ece') is not None:
        lines.append(f'  ECE ({result["ece_bins"]} bins): {100 * result["ece"]:.2f}%')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import conformalsam_mmseg  # noqa: F401  (registers the backbone, datasets, transforms)
    from conformalsam_mmseg.annotators.cache import default_topk, read_manifest, write_manifest
    from conformalsam_mmseg.datasets import CamVidDataset
    classes = list(CamVidDataset.METAINFO['classes'])
    try:
        args.topk = default_topk(len(classes), args.topk)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    train_stems = select_train_stems(args.data_root, args.max_train_images)
    export_stems = list_stems(args.data_root, 'train')
    if args.max_export_images is not None:
        export_stems = export_stems[:args.max_export_images]
    print(f'training on {len(train_stems)} {TRAIN_SEQUENCE} frames of CamVid test at '
          f'{args.scale} resolution, exporting {len(export_stems)} CamVid train images '
          f'(top-{args.topk} of {len(classes)} classes{", flip" if args.flip else ""}) to '
          f'{args.out}', flush=True)

    checkpoint = pinned_weights(args, train_stems)
    if checkpoint:
        os.makedirs(args.work_dir, exist_ok=True)   # the evaluation goes there
        cfg, train_seconds = build_config(args, osp.join(args.work_dir, STEMS_FILE)), None
    else:
        checkpoint, cfg, train_seconds = train(args, train_stems)
        if args.weights:
            checkpoint = pin_weights(checkpoint, args.weights, train_settings(args, train_stems))
    command = remake_command(args)
    model_info = dict(checkpoint=checkpoint, checkpoint_sha1=file_sha1(checkpoint),
                      trained_on=f'CamVid test, {TRAIN_SEQUENCE} frames only',
                      num_train_images=len(train_stems), iters=args.iters, crop=args.crop,
                      batch_size=args.batch_size, lr=args.lr, scale=args.scale,
                      seed=args.seed)
    timing_file = osp.join(args.work_dir, 'train_time.json')
    if train_seconds is not None:
        with open(timing_file, 'w') as f:
            json.dump(dict(seconds=train_seconds, iters=args.iters,
                           threads=torch.get_num_threads()), f)
    model = load_model(cfg, checkpoint, 'cuda' if torch.cuda.is_available() else 'cpu')
    start = time.time()
    written, skipped = export(args, model, cfg, classes, export_stems, command, model_info)
    export_seconds = time.time() - start
    print(f'{written} written, {skipped} already valid, {len(export_stems)} images in '
          f'{export_seconds:.1f}s -> {args.out}', flush=True)

    start = time.time()
    result = evaluate(args, classes, export_stems)
    eval_seconds = time.time() - start
    if osp.isfile(timing_file):
        with open(timing_file) as f:
            result['train_seconds'] = json.load(f)['seconds']
    result.update(train_stems=len(train_stems), iters=args.iters, crop=args.crop,
                  batch_size=args.batch_size, lr=args.lr, scale=args.scale, flip=args.flip,
                  topk=args.topk, command=command, export_seconds=export_seconds,
                  exported_images=written, eval_seconds=eval_seconds)
    reliability = plot_reliability(
        result, osp.join(args.work_dir, RELIABILITY_FILE),
        title=f'cross-sequence annotator, CamVid train ({len(export_stems)} images)')
    result['reliability_png'] = reliability
    print(format_eval(result), flush=True)
    print(f'reliability diagram: {reliability}', flush=True)
    with open(osp.join(args.work_dir, EVAL_FILE), 'w') as f:
        json.dump(result, f, indent=2)
    manifest = read_manifest(args.out) or {}
    manifest['evaluation'] = {k: result[k] for k in (
        'mIoU', 'aAcc', 'per_class_IoU', 'num_images', 'labeled_pixels', 'top_k_coverage',
        'ece', 'ece_bins', 'reliability')}
    write_manifest(args.out, manifest)
    return dict(written=written, skipped=skipped, total=len(export_stems),
                train_stems=train_stems, trained=train_seconds is not None,
                checkpoint=checkpoint, eval=result)


if __name__ == '__main__':
    main()
