"""Run an annotator over the images of a split and cache its top-k probabilities, one file each.

  python tools/generate_pseudo_labels.py CONFIG --annotator TYPE [--annotator-cfg k=v ...] \\
      --split SPLIT --out DIR [--topk K]

--topk: the classes kept per pixel; by default every class when the config has at most 32
(VOC, CamVid), while with more (ADE20K's 150) it must be given. A true class outside the cached
top-k reads back as probability 0 (LAC score 1), which forces the pixel-mode conformal quantile
to 1 for every alpha below the share of such pixels (docs/annotators.md, "Top-k truncation").

Examples:
  # the simulated annotator (benchmarks only: it reads the ground truth)
  python tools/generate_pseudo_labels.py configs/demo/deeplabv3plus_r18-tiny_shapes.py \\
      --annotator simulated --annotator-cfg gap=0.5 --split train --out work_dirs/demo/annotator
  # SEEM (the paper's annotator) needs its clone, config and checkpoint
  python tools/generate_pseudo_labels.py configs/allspark_conformalsam_voc.py \\
      --annotator seem --annotator-cfg repo=$SEEM checkpoint=$SEEM/seem_focall_v1.pt \\
      config_file=$SEEM/configs/seem/focall_unicl_lang_v1.yaml \\
      --split labeled --out data/annotator_cache/seem_voc
  # CLIPSeg on VOC's unlabeled images, 4 GPUs (each process takes every 4th image)
  python -m torch.distributed.run --nproc_per_node 4 tools/generate_pseudo_labels.py \\
      CONFIG --annotator clipseg --annotator-cfg background_index=0 --split unlabeled \\
      --out data/annotator/voc_clipseg

--annotator: simulated, clipseg, seem, precomputed, or any name registered in
conformalsam_mmseg.annotators.ANNOTATORS; --annotator-cfg gives its arguments.

--split picks the images from the config:
  train / val / test   the dataset of train_dataloader / val_dataloader / test_dataloader;
  NAME                 a top-level config variable NAME_dataset (e.g. labeled_dataset,
                       unlabeled_dataset), if the config defines one;
  labeled / unlabeled  otherwise the dataset of train_dataloader (or the one of its datasets)
                       whose ann_file is labeled.txt / unlabeled.txt; 'unlabeled' falls back to
                       the labeled dataset with its ann_file's labeled.txt replaced by
                       unlabeled.txt (data/splits/<set>/<split>/ holds both);
  --ann-file FILE      replaces the chosen dataset's ann_file (one stem per line; a path
                       relative to the current folder, or else to data_root).
  --seg-map-path DIR   the label folder (relative to data_root) for annotators that read
                       ground truth (simulated), e.g. on VOC classic's unlabeled images, whose
                       masks are in VOCdevkit/VOC2012/SegmentationClassAug.

Every image (and, for the simulated annotator, every label file) is checked before the first
is annotated.

The run is resumable (finished, valid entries are skipped; --overwrite remakes them), writes
every file atomically, and under torchrun each process takes every WORLD_SIZE-th image (no
process group is needed; on GPUs each process uses cuda:LOCAL_RANK). It writes DIR/cache_info.json
with the command of each split made into DIR (and its images); training-time errors for missing
or broken entries quote the command of the entry's split.
Format: docs/annotators.md.
"""
import argparse
import os
import os.path as osp
import shlex
import sys
import time

SHORT_NAMES = dict(simulated='SimulatedAnnotator', clipseg='CLIPSegAnnotator',
                   seem='SEEMAnnotator', precomputed='PrecomputedAnnotator')
WRAPPER_KEYS = ('dataset', 'datasets')
# what each annotator needs on the command line (checked before anything is loaded)
ANNOTATOR_EXAMPLES = dict(
    SEEMAnnotator='--annotator-cfg repo=/path/to/SEEM '
    'config_file=/path/to/SEEM/configs/seem/focall_unicl_lang_v1.yaml '
    'checkpoint=/path/to/seem_focall_v1.pt',
    PrecomputedAnnotator='--annotator-cfg cache_dir=/path/to/a/cache')
PATH_OPTIONS = dict(SEEMAnnotator=('repo', 'config_file', 'checkpoint'),
                    PrecomputedAnnotator=('cache_dir',))


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        prog='generate_pseudo_labels.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the training config (its datasets list the images)')
    parser.add_argument('--annotator', required=True, metavar='TYPE',
                        help=f'{", ".join(SHORT_NAMES)} or a registered annotator name')
    parser.add_argument('--annotator-cfg', nargs='+', action=DictAction, default={},
                        metavar='K=V', help='annotator arguments, e.g. gap=0.5 seed=0')
    parser.add_argument('--split', required=True,
                        help='train, val, test, labeled, unlabeled, or NAME for a config '
                        'variable NAME_dataset')
    parser.add_argument('--out', required=True, metavar='DIR', help='the cache folder')
    parser.add_argument('--topk', type=int, default=None, metavar='K',
                        help='classes stored per pixel (default: all of them when the config '
                        'has at most 32 classes; required with more)')
    parser.add_argument('--ann-file', metavar='FILE',
                        help='image stems to annotate instead of the dataset\'s ann_file (a '
                        'path as typed, relative to the current folder, or to data_root)')
    parser.add_argument('--seg-map-path', metavar='DIR',
                        help='the label folder of the split, for annotators that read ground '
                        'truth (simulated), relative to data_root as data_prefix.seg_map_path, '
                        'e.g. VOCdevkit/VOC2012/SegmentationClassAug')
    parser.add_argument('--codec', choices=('zlib', 'none'), default='zlib',
                        help='payload compression (default: %(default)s; none: larger files, '
                        'faster loading)')
    parser.add_argument('--overwrite', action='store_true',
                        help='remake entries that exist and are valid')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='K=V',
                        help='override config settings, e.g. '
                        'train_dataloader.dataset.data_root=data/x')
    return parser.parse_args(argv)


def remake_command(args):
    """The command line that (re)makes this cache, for error messages and the manifest."""
    parts = ['python', 'tools/generate_pseudo_labels.py', args.config,
             '--annotator', args.annotator]
    if args.annotator_cfg:
        parts += ['--annotator-cfg'] + [f'{k}={_cli_value(v)}'
                                        for k, v in args.annotator_cfg.items()]
    parts += ['--split', args.split, '--out', args.out, '--topk', str(args.topk)]
    if args.ann_file:
        parts += ['--ann-file', args.ann_file]
    if args.seg_map_path:
        parts += ['--seg-map-path', args.seg_map_path]
    if args.codec != 'zlib':
        parts += ['--codec', args.codec]
    if args.cfg_options:
        parts += ['--cfg-options'] + [f'{k}={_cli_value(v)}'
                                      for k, v in args.cfg_options.items()]
    return shlex.join(parts)


def _cli_value(v):
    if isinstance(v, (list, tuple)):
        return ','.join(_cli_value(x) for x in v)
    return str(v)


# --- which images -----------------------------------------------------------------------
def _leaves(ds_cfg):
    """The plain dataset configs inside wrappers (ConcatDataset, RepeatDataset, ...)."""
    if isinstance(ds_cfg, (list, tuple)):
        return [leaf for d in ds_cfg for leaf in _leaves(d)]
    for key in WRAPPER_KEYS:
        if key in ds_cfg:
            return _leaves(ds_cfg[key])
    return [ds_cfg]


def _ann_name(ds_cfg):
    ann = ds_cfg.get('ann_file') or ''
    return osp.splitext(osp.basename(ann))[0]


def split_dataset_cfg(cfg, split):
    """The dataset config of ``split`` (see the module docstring)."""
    import copy
    train_set = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    if train_set.get('type') == 'SemiDataset' and split in ('labeled', 'unlabeled'):
        # the split as the config trains on it (a top-level labeled_dataset variable of a base
        # config may still name the base's split)
        return copy.deepcopy(train_set[split])
    named = cfg.get(f'{split}_dataset')
    if isinstance(named, dict):
        return copy.deepcopy(named)
    if split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            raise SystemExit(f'error: the config has no {split}_dataloader')
        leaves = _leaves(loader['dataset'])
        if len(leaves) != 1:
            raise SystemExit(f'error: {split}_dataloader holds {len(leaves)} datasets; pick '
                             'one with --split labeled/unlabeled or a NAME_dataset variable')
        return copy.deepcopy(leaves[0])
    if split in ('labeled', 'unlabeled'):
        leaves = _leaves(cfg.train_dataloader['dataset'])
        match = [d for d in leaves if _ann_name(d) == split]
        if match:
            return copy.deepcopy(match[0])
        labeled = [d for d in leaves if _ann_name(d) == 'labeled']
        if split == 'labeled' and len(leaves) == 1:
            return copy.deepcopy(leaves[0])
        if split == 'unlabeled' and labeled:
            ds = copy.deepcopy(labeled[0])
            ann = ds['ann_file']
            ds['ann_file'] = osp.join(osp.dirname(ann), 'unlabeled' + osp.splitext(ann)[1])
            return ds
        raise SystemExit(
            f'error: cannot tell which dataset of train_dataloader is the {split} one (no '
            f'ann_file named {split}.txt); define {split}_dataset in the config or pass '
            '--ann-file')
    raise SystemExit(f'error: unknown split {split!r}: the config defines no {split}_dataset; '
                     'use train, val, test, labeled or unlabeled')


def resolve_ann_file(ann_file, ds_cfg):
    """``--ann-file`` as the user typed it: relative to the current folder when it exists
    there (made absolute, since mmengine joins relative ann_files to data_root), else relative
    to the dataset's data_root."""
    if osp.isfile(ann_file):
        return osp.abspath(ann_file)
    root = ds_cfg.get('data_root') or ''
    if root and not osp.isabs(ann_file) and osp.isfile(osp.join(root, ann_file)):
        return ann_file
    where = f' nor under data_root {osp.abspath(root)}' if root else ''
    raise SystemExit(f'error: --ann-file {ann_file}: no such file in the current folder '
                     f'{os.getcwd()}{where}')


def build_image_list(cfg, split, ann_file=None, seg_map_path=None, return_split_file=False):
    """(data infos, class names) of the split's images, and the split file (the ann_file as
    opened, None without one) with ``return_split_file``."""
    from mmseg.registry import DATASETS

    from conformalsam_mmseg.utils.split_files import split_file_path
    ds_cfg = split_dataset_cfg(cfg, split)
    if ann_file:
        ds_cfg['ann_file'] = resolve_ann_file(ann_file, ds_cfg)
    if seg_map_path:
        ds_cfg.setdefault('data_prefix', {})['seg_map_path'] = seg_map_path
    ds_cfg['pipeline'] = []
    ds_cfg['lazy_init'] = False
    ds_cfg['serialize_data'] = False
    split_file = split_file_path(ds_cfg) if ds_cfg.get('ann_file') else None
    if split_file and not osp.isfile(split_file):
        raise SystemExit(f'error: split {split!r}: the split file {split_file} does not exist '
                         f'(dataset ann_file {ds_cfg["ann_file"]!r}, data_root '
                         f'{ds_cfg.get("data_root")!r}); pass --ann-file or make it with '
                         'tools/make_splits.py')
    dataset = DATASETS.build(ds_cfg)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    if not infos:
        raise SystemExit(f'error: split {split!r} has no image (dataset {ds_cfg.get("type")}, '
                         f'split file {split_file or "none: the image folder"}, data_root '
                         f'{ds_cfg.get("data_root")!r})')
    classes = list(dataset.metainfo['classes'])
    return (infos, classes, split_file) if return_split_file else (infos, classes)


def check_images_exist(infos, split_file):
    """Refuse a split naming missing images before annotating any."""
    from conformalsam_mmseg.utils.split_files import missing_images, missing_images_message
    missing = missing_images(infos)
    if missing:
        raise SystemExit('error: ' + missing_images_message(
            missing, len(infos), split_file or 'the dataset'))


def check_ground_truth(infos, split):
    """For annotators that read ground truth: every image's label file, before any work."""
    missing = [info for info in infos
               if not info.get('seg_map_path') or not osp.isfile(info['seg_map_path'])]
    if not missing:
        return
    first = missing[0]
    raise SystemExit(
        f'error: this annotator needs ground truth (the simulated one stands in for a real '
        f'annotator in benchmarks), but {len(missing)} of the {len(infos)} images of split '
        f'{split!r} have no label file (e.g. {first["img_path"]}: '
        f'{first.get("seg_map_path")}). Point it at the labels with --seg-map-path DIR '
        '(relative to data_root, as data_prefix.seg_map_path; on VOC the blended setting\'s '
        'VOCdevkit/VOC2012/SegmentationClassAug holds masks for all 10582 training images), '
        'or run a real annotator (seem, clipseg) on splits without labels')


def check_unique_stems(infos):
    from conformalsam_mmseg.annotators import image_stem
    seen = {}
    for info in infos:
        stem = image_stem(info['img_path'])
        if stem in seen:
            raise SystemExit(f'error: two images share the file stem {stem!r} '
                             f'({seen[stem]} and {info["img_path"]}); the cache keys entries by '
                             'stem')
        seen[stem] = info['img_path']


def image_size(path):
    """(H, W) as mmcv/cv2 loads the image (EXIF orientation applied), from its header."""
    from PIL import Image
    with Image.open(path) as img:
        w, h = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001  (a broken EXIF block: cv2 ignores it too)
            orientation = 1
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def load_ground_truth(info):
    from mmseg.datasets.transforms import LoadAnnotations
    path = info.get('seg_map_path')
    if not path or not osp.isfile(path):
        raise SystemExit(f'error: the annotator needs ground truth, but the label file of '
                         f'{info["img_path"]} ({path}) does not exist; run it on a split with '
                         'label files')
    results = dict(seg_map_path=path, reduce_zero_label=info.get('reduce_zero_label', False),
                   seg_fields=[], label_map=info.get('label_map'))
    return LoadAnnotations()(results)['gt_seg_map']


def build(args):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import conformalsam_mmseg  # noqa: F401  (registers datasets and transforms)
    from conformalsam_mmseg.annotators import build_annotator
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    annotator_cfg = dict(args.annotator_cfg or {})
    annotator_cfg['type'] = SHORT_NAMES.get(args.annotator, args.annotator)
    check_annotator_args(args.annotator, annotator_cfg)
    return cfg, build_annotator(annotator_cfg)


def check_annotator_args(name, annotator_cfg):
    """The annotator's required arguments are given and its file arguments exist."""
    import inspect

    from conformalsam_mmseg.annotators import ANNOTATORS
    type_name = annotator_cfg['type']
    cls = ANNOTATORS.get(type_name)
    if cls is None:
        raise SystemExit(f'error: --annotator {name}: no such annotator; use '
                         f'{", ".join(SHORT_NAMES)} or one of {sorted(ANNOTATORS.module_dict)}')
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    missing = [p.name for p in params
               if p.default is inspect.Parameter.empty and p.name not in annotator_cfg
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    example = ANNOTATOR_EXAMPLES.get(type_name, '')
    if missing:
        raise SystemExit(
            f'error: --annotator {name} ({type_name}) needs --annotator-cfg '
            + ' '.join(f'{m}=...' for m in missing)
            + (f', e.g.\n    {example}' if example else '')
            + '\n(docs/annotators.md, "Backends")')
    for option in PATH_OPTIONS.get(type_name, ()):
        value = annotator_cfg.get(option)
        if value is not None and not osp.exists(str(value)):
            raise SystemExit(f'error: --annotator-cfg {option}={value}: no such file or folder'
                             + (f' (e.g. {example})' if example else ''))


def main(argv=None):
    args = parse_args(argv)
    import mmcv
    import torch
    from tqdm import tqdm

    from conformalsam_mmseg.annotators import AnnotatorCache, image_stem, write_entry
    from conformalsam_mmseg.annotators.cache import default_topk, write_manifest

    rank = int(os.environ.get('RANK', 0))
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())

    cfg, annotator = build(args)
    infos, classes, split_file = build_image_list(cfg, args.split, args.ann_file,
                                                  args.seg_map_path, return_split_file=True)
    check_unique_stems(infos)
    check_images_exist(infos, split_file)
    if annotator.needs_ground_truth:
        check_ground_truth(infos, args.split)
    try:
        args.topk = default_topk(len(classes), args.topk)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None
    os.makedirs(args.out, exist_ok=True)
    command = remake_command(args)
    if rank == 0:
        write_manifest(args.out, manifest(args, command, annotator, classes, infos))

    cache = AnnotatorCache(args.out, num_classes=len(classes), class_names=classes,
                           annotator=annotator.name, topk=args.topk)
    mine = infos[rank::world_size]
    written = skipped = 0
    start = time.time()
    bar = tqdm(mine, desc=f'{annotator.name} [{rank}/{world_size}]' if world_size > 1 else
               annotator.name, unit='img', position=rank, dynamic_ncols=True, file=sys.stderr)
    for info in bar:
        img_path = info['img_path']
        stem = image_stem(img_path)
        height, width = _size_or_none(img_path)
        if not args.overwrite and cache.is_valid(stem, height=height, width=width):
            skipped += 1
            continue
        image = mmcv.imread(img_path, channel_order='bgr')
        if image is None:
            raise SystemExit(f'error: cannot read image {img_path}')
        gt = load_ground_truth(info) if annotator.needs_ground_truth else None
        probs = annotator.annotate(image, classes, img_path=img_path, gt_seg_map=gt)
        write_entry(args.out, probs, stem=stem, class_names=classes, annotator=annotator.name,
                    topk=args.topk, codec=args.codec)
        written += 1
    bar.close()
    print(f'[rank {rank}/{world_size}] {written} written, {skipped} already valid, '
          f'{len(mine)} images in {time.time() - start:.1f}s -> {args.out}', flush=True)
    return dict(written=written, skipped=skipped, total=len(mine))


def manifest(args, command, annotator, classes, infos):
    """``cache_info.json``: this run, and every run before it into the same cache (one per
    split, with its image stems), so that errors quote the command of the entry's own split."""
    from conformalsam_mmseg.annotators import image_stem
    from conformalsam_mmseg.annotators.cache import read_manifest
    previous = read_manifest(args.out) or {}
    runs = {}
    if (previous.get('classes') == classes and previous.get('annotator') == annotator.name
            and previous.get('topk') == args.topk):
        runs = dict(previous.get('splits') or {})
    label = args.split + (f' ({args.ann_file})' if args.ann_file else '')
    runs.pop(label, None)
    runs[label] = dict(command=command, num_images=len(infos),
                       stems=[image_stem(info['img_path']) for info in infos])
    return dict(command=command, config=args.config, split=args.split,
                annotator=annotator.name, annotator_cfg=repr(annotator), topk=args.topk,
                codec=args.codec, classes=classes, num_images=len(infos), splits=runs)


def _size_or_none(path):
    try:
        return image_size(path)
    except OSError:
        return None, None


if __name__ == '__main__':
    main()
