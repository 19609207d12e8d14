"""Make labeled / unlabeled ann_files (one stem per line) for semi-supervised training.

  convert  UniMatch / AllSpark split files ("JPEGImages/x.jpg SegmentationClass/x.png" per line)
           -> <out-dir>/labeled.txt and <out-dir>/unlabeled.txt, after checking them.
  random   a seeded split of any image folder (or stem list), for one or several fractions.

Examples:
  python tools/make_splits.py convert --data-root data/VOCdevkit/VOC2012 \\
      --labeled splits/pascal/1_16/labeled.txt --unlabeled splits/pascal/1_16/unlabeled.txt \\
      --out-dir data/splits/voc_blended/1-16
  python tools/make_splits.py random --img-dir data/camvid/images/train --suffix .jpg \\
      --fraction 1/16 1/8 1/4 --seed 0 --out-dir data/splits/camvid

The logic is conformalsam_mmseg/datasets/splits.py; see docs/datasets.md.
"""
import argparse
import importlib.util
import os.path as osp
import sys


def _load_splits():
    """splits.py is pure Python and numpy: load it by path, so that the CLI starts in a fraction
    of a second instead of importing torch and mmseg through the package's ``__init__``."""
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'conformalsam_mmseg',
                    'datasets', 'splits.py')
    if not osp.isfile(path):
        from conformalsam_mmseg.datasets import splits
        return splits
    name = '_conformalsam_mmseg_splits'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


splits = _load_splits()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='make_splits.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True, metavar='{convert,random}')

    conv = sub.add_parser(
        'convert', help='UniMatch / AllSpark split files -> mmseg ann_files',
        description='Check a UniMatch / AllSpark labeled/unlabeled pair of split files '
        '(malformed lines, duplicate ids, labeled/unlabeled overlap, and with --data-root '
        'missing images) and write <out-dir>/labeled.txt and <out-dir>/unlabeled.txt, '
        'one sorted stem per line.')
    conv.add_argument('--labeled', required=True, metavar='FILE',
                      help='labeled split file, e.g. splits/pascal/1_16/labeled.txt')
    conv.add_argument('--unlabeled', required=True, metavar='FILE',
                      help='unlabeled split file, e.g. splits/pascal/1_16/unlabeled.txt')
    conv.add_argument('--out-dir', required=True, metavar='DIR',
                      help='folder for labeled.txt and unlabeled.txt (created if needed)')
    conv.add_argument('--data-root', metavar='ROOT',
                      help='check that every image (first column) exists under ROOT, '
                      'e.g. data/VOCdevkit/VOC2012')
    conv.add_argument('--overwrite', action='store_true',
                      help='replace existing ann_files that hold a different split')

    rand = sub.add_parser(
        'random', help='seeded split of an image folder or a stem list',
        description='Draw labeled = ceil(fraction * N) images (at least 1) with '
        'numpy.random.default_rng(SEED); unlabeled = the rest. The same seed always gives '
        'the same split, and for one seed the labeled sets of several fractions are nested. '
        'One fraction writes into OUT-DIR; several (or --subdir) write into '
        'OUT-DIR/<name>/ with names like 1-16 (for 1/16) or 92 (for a count of 92).')
    src = rand.add_mutually_exclusive_group(required=True)
    src.add_argument('--img-dir', metavar='DIR',
                     help='take every image under DIR (recursively), e.g. '
                     'data/camvid/images/train')
    src.add_argument('--stems', metavar='FILE',
                     help='take the stems listed in FILE (an mmseg ann_file, one per line)')
    rand.add_argument('--suffix', default='.jpg',
                      help='image suffix for --img-dir (default: %(default)s)')
    rand.add_argument('--fraction', required=True, nargs='+', metavar='F',
                      help='labeled share: 1/16, 0.0625 or 1_16, or an integer count such '
                      'as 92; several allowed')
    rand.add_argument('--seed', type=int, default=0, help='random seed (default: %(default)s)')
    rand.add_argument('--out-dir', required=True, metavar='DIR', help='output folder')
    rand.add_argument('--subdir', action='store_true',
                      help='write into OUT-DIR/<name>/ even for a single fraction')
    rand.add_argument('--overwrite', action='store_true',
                      help='replace existing ann_files that hold a different split')
    return parser.parse_args(argv)


def _summary(labeled, unlabeled, out_dir):
    total = len(labeled) + len(unlabeled)
    return (f'{len(labeled)} labeled + {len(unlabeled)} unlabeled = {total} images -> '
            f'{osp.join(out_dir, splits.LABELED_FILE)}, '
            f'{osp.join(out_dir, splits.UNLABELED_FILE)}')


def run_convert(args):
    labeled, unlabeled = splits.convert_split_files(
        args.labeled, args.unlabeled, args.out_dir, data_root=args.data_root,
        overwrite=args.overwrite)
    print('convert: ' + _summary(labeled, unlabeled, args.out_dir))


def run_random(args):
    if args.img_dir is not None:
        stems, source = splits.list_stems(args.img_dir, args.suffix), args.img_dir
    else:
        stems, source = splits.read_stems(args.stems), args.stems
    names = [splits.fraction_name(f) for f in args.fraction]  # validates every fraction first
    if len(set(names)) != len(names):
        raise splits.SplitError(f'the same fraction is given twice: {" ".join(args.fraction)}')
    nested = args.subdir or len(args.fraction) > 1
    jobs = []
    for fraction, name in zip(args.fraction, names):
        out_dir = osp.join(args.out_dir, name) if nested else args.out_dir
        labeled, unlabeled = splits.seeded_split(stems, fraction, seed=args.seed)
        splits.check_ann_files(out_dir, labeled, unlabeled, overwrite=args.overwrite)
        jobs.append((fraction, out_dir, labeled, unlabeled))
    for fraction, out_dir, labeled, unlabeled in jobs:  # nothing is written if any would fail
        splits.write_ann_files(out_dir, labeled, unlabeled, overwrite=args.overwrite)
        print(f'random {fraction} (seed {args.seed}) of {source}: '
              + _summary(labeled, unlabeled, out_dir))


def main(argv=None):
    args = parse_args(argv)
    try:
        {'convert': run_convert, 'random': run_random}[args.command](args)
    except (splits.SplitError, OSError) as e:
        print(f'make_splits.py {args.command}: error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
