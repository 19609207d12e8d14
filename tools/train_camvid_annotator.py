"""The cross-sequence CamVid annotator: train on Seq05VD, cache its probabilities on CamVid train.

  python tools/train_camvid_annotator.py [--data-root data/camvid] [--iters 500] [--crop 128] \\
      [--batch-size 8] [--lr 0.005] [--work-dir work_dirs/camvid_cross_sequence_annotator] \\
      [--out data/annotator_cache/camvid_cross_sequence] [--topk 3]

CamVid's test split holds two video sequences: 0001TP (which is also in train) and Seq05VD
(171 frames, in no other split). A segmentor trained on the Seq05VD frames alone and applied
to the train sequences (0001TP, 0006R0, 0016E5) is an annotator whose errors come from a real
model and a real domain gap (other streets, other light), unlike the SimulatedAnnotator.

Three steps:

1. train: the config's segmentor (default: DeepLabV3+ on ImageNet-pretrained
   EfficientNet-Lite0, configs/supervised/deeplabv3plus_effl0_camvid-1-8.py, half resolution)
   with an mmengine Runner on the Seq05VD frames of images/test only (selected by the file-name
   prefix ``Seq05VD``; the tool checks that no training image comes from a train or val
   sequence). Skipped when the work dir already holds the final checkpoint of this run
   (``--retrain`` trains again).
2. export: for every image of images/train (367: labeled and unlabeled images of every split
   are among them, and calibration reads the labeled ones), the config's test pipeline (resize
   to half resolution), the model's logits upsampled bilinearly to the original 480 x 360,
   softmax, written as a cache entry (top-k, ``write_entry``: atomic) plus the manifest
   ``cache_info.json`` holding the command that remakes the cache. Resumable: valid entries
   are skipped (``--overwrite`` remakes them). A cache made by a different checkpoint is
   refused unless ``--overwrite``.
3. evaluate: the annotator's argmax (the cached top-1 class) on CamVid train against the
   ground truth, 255 ignored: mIoU and per-class IoU, printed and written to
   WORK_DIR/annotator_eval.json (and into the manifest).

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
                        help='square training crop, at half resolution (default: %(default)s)')
    parser.add_argument('--batch-size', type=int, default=8, help='(default: %(default)s)')
    parser.add_argument('--lr', type=float, default=0.005,
                        help='base learning rate, the decode head\'s x10, poly decay to 0 '
                        '(default: %(default)s, UniMatch\'s Cityscapes value: a short '
                        'schedule; the config\'s 0.001 is for its 2,000 iterations)')
    parser.add_argument('--num-workers', type=int, default=1,
                        help='training data loader workers (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='(default: %(default)s)')
    parser.add_argument('--topk', type=int, default=3, metavar='K',
                        help='classes stored per pixel (default: %(default)s)')
    parser.add_argument('--codec', choices=('zlib', 'none'), default='none',
                        help='cache payload compression (default: %(default)s, 1 MB per image '
                        'at k = 3, loads ~1.2x slower than without the cache where zlib '
                        'is ~1.9x: docs/annotators.md, "Loading speed on CamVid")')
    parser.add_argument('--export-batch', type=int, default=4,
                        help='images per forward pass when exporting (default: %(default)s)')
    parser.add_argument('--max-train-images', type=int, default=None, metavar='N',
                        help='train on N Seq05VD frames (evenly spaced), for tests')
    parser.add_argument('--max-export-images', type=int, default=None, metavar='N',
                        help='export and evaluate the first N train images only, for tests')
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
             '--topk', str(args.topk), '--seed', str(args.seed)]
    if args.config != DEFAULT_CONFIG:
        parts += ['--config', args.config]
    parts += ['--lr', str(args.lr)]
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
    for step in ds.pipeline:
        if step['type'] == 'RandomCrop':
            step['crop_size'] = crop
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters,
                         val_interval=args.iters + 1)
    # no validation: Seq05VD has no held-out frames, and CamVid train is what it will label
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=args.iters, max_keep_ckpts=1, save_best=None)
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
    if osp.isfile(checkpoint) and not args.retrain:
        used = _read_lines(stems_file) if osp.isfile(stems_file) else None
        if used != stems:
            raise SystemExit(
                f'error: {checkpoint} was trained on other images than the ones selected now '
                f'({stems_file}); pass --retrain or another --work-dir')
        print(f'{checkpoint} exists: not training again (--retrain to train)', flush=True)
        return checkpoint, cfg, None
    with open(stems_file, 'w') as f:
        f.write(''.join(s + '\n' for s in stems))
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
    return checkpoint, cfg, seconds


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
def load_model(cfg, checkpoint):
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def export_pipeline(cfg):
    """The config's test pipeline without its label loading (the half-resolution resize)."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    steps = [dict(s) for s in cfg.test_pipeline
             if not s['type'].startswith('LoadCheckedAnnotations')
             and s['type'] != 'LoadAnnotations']
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose(steps)


def predict_probs(model, pipeline, img_paths):
    """(B, K, H, W) float32 softmax probabilities at each image's original size (all the
    images must have one size): the model runs on the pipeline's (resized) input, its logits
    are upsampled bilinearly to the original size as mmseg's predict does, then softmax."""
    import torch
    from mmengine.dataset import pseudo_collate
    batch = pseudo_collate([pipeline(dict(img_path=p)) for p in img_paths])
    with torch.no_grad():
        samples = model.test_step(batch)
    logits = torch.stack([s.seg_logits.data for s in samples])
    return logits.float().softmax(dim=1)


def export(args, model, cfg, classes, stems, command, model_info):
    """Write the cache entries of ``stems`` (images/train); returns (written, skipped)."""
    from tqdm import tqdm

    from conformalsam_mmseg.annotators import AnnotatorCache, write_entry
    from conformalsam_mmseg.annotators.cache import read_manifest, write_manifest
    os.makedirs(args.out, exist_ok=True)
    old = read_manifest(args.out) or {}
    old_model = (old.get('model') or {}).get('checkpoint_sha1')
    if (old_model and old_model != model_info['checkpoint_sha1'] and not args.overwrite
            and any(n.endswith('.topk') for n in os.listdir(args.out))):
        raise SystemExit(
            f'error: the cache {args.out} was made by another checkpoint ({old_model[:12]}, now '
            f'{model_info["checkpoint_sha1"][:12]}); pass --overwrite to remake it, or --out '
            'another folder')
    write_manifest(args.out, dict(
        command=command, config=args.config, split='train', annotator=ANNOTATOR_NAME,
        annotator_cfg=f'{ANNOTATOR_NAME}(trained on CamVid test {TRAIN_SEQUENCE} frames)',
        topk=args.topk, codec=args.codec, classes=list(classes), num_images=len(stems),
        model=model_info))
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
                                  [osp.join(img_dir, s + IMAGE_SUFFIX) for s in group])
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
def evaluate(args, classes, stems):
    """IoU of the cached argmax (top-1 class) against the ground truth of CamVid train."""
    import mmcv
    import numpy as np

    from conformalsam_mmseg.annotators import AnnotatorCache
    k = len(classes)
    cache = AnnotatorCache(args.out, num_classes=k, class_names=classes,
                           annotator=ANNOTATOR_NAME)
    confusion = np.zeros((k, k), np.int64)
    for stem in stems:
        gt = mmcv.imread(osp.join(args.data_root, 'labels', 'train', stem + LABEL_SUFFIX),
                         'unchanged')
        entry = cache.load(stem, height=gt.shape[0], width=gt.shape[1])
        pred = entry.index[0].astype(np.int64)
        valid = gt != 255
        confusion += np.bincount(gt[valid].astype(np.int64) * k + pred[valid],
                                 minlength=k * k).reshape(k, k)
    return iou_from_confusion(confusion, classes, len(stems))


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


def format_eval(result):
    lines = [f'cross-sequence annotator on CamVid train ({result["num_images"]} images): '
             f'mIoU {100 * result["mIoU"]:.2f}, aAcc {100 * result["aAcc"]:.2f}']
    width = max(len(c) for c in result['per_class_IoU'])
    for c, v in result['per_class_IoU'].items():
        lines.append(f'  {c:<{width}}  ' + ('   n/a' if v is None else f'{100 * v:6.2f}'))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import conformalsam_mmseg  # noqa: F401  (registers the backbone, datasets, transforms)
    from conformalsam_mmseg.annotators.cache import read_manifest, write_manifest
    from conformalsam_mmseg.datasets import CamVidDataset
    if not 1 <= args.topk <= 11:
        raise SystemExit('error: --topk must be in 1..11')
    classes = list(CamVidDataset.METAINFO['classes'])
    train_stems = select_train_stems(args.data_root, args.max_train_images)
    export_stems = list_stems(args.data_root, 'train')
    if args.max_export_images is not None:
        export_stems = export_stems[:args.max_export_images]
    print(f'training on {len(train_stems)} {TRAIN_SEQUENCE} frames of CamVid test, exporting '
          f'{len(export_stems)} CamVid train images to {args.out}', flush=True)

    checkpoint, cfg, train_seconds = train(args, train_stems)
    command = remake_command(args)
    model_info = dict(checkpoint=checkpoint, checkpoint_sha1=file_sha1(checkpoint),
                      trained_on=f'CamVid test, {TRAIN_SEQUENCE} frames only',
                      num_train_images=len(train_stems), iters=args.iters, crop=args.crop,
                      batch_size=args.batch_size, seed=args.seed)
    timing_file = osp.join(args.work_dir, 'train_time.json')
    if train_seconds is not None:
        with open(timing_file, 'w') as f:
            json.dump(dict(seconds=train_seconds, iters=args.iters,
                           threads=torch.get_num_threads()), f)
    model = load_model(cfg, checkpoint)
    start = time.time()
    written, skipped = export(args, model, cfg, classes, export_stems, command, model_info)
    export_seconds = time.time() - start
    print(f'{written} written, {skipped} already valid, {len(export_stems)} images in '
          f'{export_seconds:.1f}s -> {args.out}', flush=True)

    result = evaluate(args, classes, export_stems)
    if osp.isfile(timing_file):
        with open(timing_file) as f:
            result['train_seconds'] = json.load(f)['seconds']
    result.update(train_stems=len(train_stems), iters=args.iters, crop=args.crop,
                  batch_size=args.batch_size, command=command)
    print(format_eval(result), flush=True)
    with open(osp.join(args.work_dir, EVAL_FILE), 'w') as f:
        json.dump(result, f, indent=2)
    manifest = read_manifest(args.out) or {}
    manifest['evaluation'] = {k: result[k] for k in ('mIoU', 'aAcc', 'per_class_IoU',
                                                      'num_images')}
    write_manifest(args.out, manifest)
    return dict(written=written, skipped=skipped, total=len(export_stems),
                train_stems=train_stems, trained=train_seconds is not None,
                checkpoint=checkpoint, eval=result)


if __name__ == '__main__':
    main()
