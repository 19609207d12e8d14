"""Labeled / unlabeled splits: read and check UniMatch / AllSpark split files, write mmseg
ann_files, and draw seeded splits for any data set.

UniMatch and AllSpark describe a split by two files with one pair per line, relative to the
data root::

    JPEGImages/2008_004112.jpg SegmentationClass/2008_004112.png

MMSeg's ``ann_file`` wants one stem per line (``2008_004112``), so this module converts the
former into ``labeled.txt`` and ``unlabeled.txt``. The same two files come out of
:func:`seeded_split` for data sets without published splits (e.g. CamVid 1/16, 1/8, 1/4).

Conventions
- ann_files are sorted, one stem per line, ``\\n``-terminated, written atomically.
- A fraction gives ``ceil(fraction * total)`` labeled images (at least 1). Ceil reproduces
  the published PASCAL VOC blended counts: ceil(10582 / 16) = 662, ceil(10582 / 4) = 2646.
- Seeded splits take a prefix of one permutation of the sorted stems drawn by
  ``numpy.random.default_rng(seed)``: the same seed gives the same split on any machine, and
  for one seed the labeled sets are nested (1/16 within 1/8 within 1/4).

Pure Python and numpy: ``tools/make_splits.py`` loads this file without importing mmseg.
"""
import math
import os
import os.path as osp
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

LABELED_FILE = 'labeled.txt'
UNLABELED_FILE = 'unlabeled.txt'
MAX_LISTED_PROBLEMS = 10


class SplitError(ValueError):
    """A split file or a split request that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class SplitEntry:
    """One line of a UniMatch / AllSpark split file."""
    stem: str  # the id: image file name without folder and extension
    image: str  # image path relative to the data root, as written in the file
    label: str  # label path relative to the data root, as written in the file
    file: str  # the split file it was read from
    lineno: int  # 1-based line number in that file

    @property
    def where(self):
        return f'{self.file}:{self.lineno}'


def _problems_message(header, problems):
    lines = [header] + [f'  {p}' for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        lines.append(f'  ... and {len(problems) - MAX_LISTED_PROBLEMS} more')
    return '\n'.join(lines)


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


def read_split_file(path, data_root=None):
    """Read and check a UniMatch / AllSpark split file.

    Blank lines and surrounding whitespace are ignored. Raises :class:`SplitError` listing every
    malformed line (not exactly two paths, or image and label names that differ), every id seen
    twice, and, when ``data_root`` is given, every image missing under it, each as
    ``FILE:LINE: reason``. Only the image column is checked on disk: the label column says
    ``SegmentationClass`` even where the blended VOC labels live in ``SegmentationClassAug``.

    Returns:
        list[SplitEntry]: the entries in file order.
    """
    path = str(path)
    if not osp.isfile(path):
        raise SplitError(f'split file not found: {path}')
    if data_root is not None and not osp.isdir(data_root):
        raise SplitError(f'data root not found: {data_root} (given to check the images of {path})')
    entries, problems, first_seen = [], [], {}
    with open(path, encoding='utf-8-sig') as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                problems.append(f'{path}:{lineno}: malformed line {line.strip()!r}: expected two '
                                'paths "IMAGE LABEL" separated by whitespace, '
                                f'got {len(fields)} field(s)')
                continue
            image, label = fields
            stem = _stem(image)
            if not stem or stem != _stem(label):
                problems.append(f'{path}:{lineno}: malformed line {line.strip()!r}: image and '
                                f'label names differ ({stem!r} vs {_stem(label)!r})')
                continue
            if stem in first_seen:
                problems.append(f'{path}:{lineno}: duplicate id {stem!r} '
                                f'(first at line {first_seen[stem]})')
                continue
            first_seen[stem] = lineno
            if data_root is not None and not osp.isfile(osp.join(data_root, image)):
                problems.append(f'{path}:{lineno}: image {image!r} is missing under the data '
                                f'root {data_root} (no file {osp.join(data_root, image)})')
            entries.append(SplitEntry(stem, image, label, path, lineno))
    if problems:
        raise SplitError(_problems_message(
            f'{path}: {len(problems)} bad line(s) in the split file:', problems))
    if not entries:
        raise SplitError(f'{path}: the split file lists no images (empty file)')
    return entries


def check_disjoint(labeled, unlabeled):
    """Raise :class:`SplitError` naming every id in both lists of :class:`SplitEntry`."""
    in_labeled = {e.stem: e for e in labeled}
    problems = [
        f'id {e.stem!r} is both labeled ({in_labeled[e.stem].where}) and unlabeled ({e.where})'
        for e in unlabeled if e.stem in in_labeled
    ]
    if problems:
        raise SplitError(_problems_message(
            f'{len(problems)} id(s) overlap between the labeled and the unlabeled split:',
            problems))


def read_split_pair(labeled_file, unlabeled_file, data_root=None):
    """Read, check and cross-check a labeled / unlabeled pair of split files.

    Returns:
        tuple[list[str], list[str]]: the sorted labeled and unlabeled stems.
    """
    labeled = read_split_file(labeled_file, data_root)
    unlabeled = read_split_file(unlabeled_file, data_root)
    check_disjoint(labeled, unlabeled)
    return sorted(e.stem for e in labeled), sorted(e.stem for e in unlabeled)


def _ann_text(stems):
    return ''.join(f'{s}\n' for s in stems)


def _check_writable(path, text, overwrite):
    """True if ``path`` must be written, False if it already holds ``text``."""
    if osp.isdir(path):
        raise SplitError(f'{path} is a directory, not an ann_file')
    if not osp.exists(path):
        return True
    with open(path, encoding='utf-8') as f:
        if f.read() == text:
            return False
    if not overwrite:
        raise SplitError(f'{path} already exists with a different split; pass overwrite=True '
                         '(--overwrite on the command line) to replace it')
    return True


def _write_atomic(path, text):
    tmp = osp.join(osp.dirname(path) or '.', f'.{osp.basename(path)}.tmp-{os.getpid()}')
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _ann_files_todo(out_dir, labeled, unlabeled, overwrite):
    out_dir = str(out_dir)
    if osp.exists(out_dir) and not osp.isdir(out_dir):
        raise SplitError(f'output folder {out_dir} exists and is not a folder')
    paths = (osp.join(out_dir, LABELED_FILE), osp.join(out_dir, UNLABELED_FILE))
    texts = (_ann_text(sorted(labeled)), _ann_text(sorted(unlabeled)))
    return paths, [(p, t) for p, t in zip(paths, texts) if _check_writable(p, t, overwrite)]


def check_ann_files(out_dir, labeled, unlabeled, overwrite=False):
    """Raise :class:`SplitError` if :func:`write_ann_files` would refuse to write."""
    _ann_files_todo(out_dir, labeled, unlabeled, overwrite)


def write_ann_files(out_dir, labeled, unlabeled, overwrite=False):
    """Write ``out_dir/labeled.txt`` and ``out_dir/unlabeled.txt``, one stem per line, sorted.

    Existing files with the same content are left alone; different ones raise
    :class:`SplitError` unless ``overwrite`` (checked for both files before writing either).

    Returns:
        tuple[str, str]: the paths of the two files.
    """
    paths, todo = _ann_files_todo(out_dir, labeled, unlabeled, overwrite)
    os.makedirs(str(out_dir), exist_ok=True)
    for path, text in todo:
        _write_atomic(path, text)
    return paths


def convert_split_files(labeled_file, unlabeled_file, out_dir, data_root=None,
                        overwrite=False):
    """UniMatch / AllSpark split files -> mmseg ann_files in ``out_dir``.

    Returns:
        tuple[list[str], list[str]]: the sorted labeled and unlabeled stems written.
    """
    labeled, unlabeled = read_split_pair(labeled_file, unlabeled_file, data_root)
    write_ann_files(out_dir, labeled, unlabeled, overwrite=overwrite)
    return labeled, unlabeled


_RATIO = re.compile(r'^\s*(\d+)\s*[/_-]\s*(\d+)\s*$')
_COUNT = re.compile(r'^\s*\+?(\d+)\s*$')


def parse_fraction(value):
    """Parse a labeled-set size.

    Accepts a fraction (``'1/16'``, ``'1_16'``, ``'1-16'``, ``0.0625``, ``'0.0625'``,
    ``Fraction(1, 16)``), in (0, 1], or an absolute count (``92``, ``'92'``), >= 1.

    Returns:
        Fraction for a fraction, int for a count.
    """
    if isinstance(value, bool):
        raise SplitError(f'bad labeled fraction {value!r}')
    if isinstance(value, (int, np.integer)):
        count = int(value)
        if count < 1:
            raise SplitError(f'bad labeled count {count}: at least 1 image must be labeled')
        return count
    if isinstance(value, Fraction):
        frac = value
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise SplitError(f'bad labeled fraction {value!r}')
        frac = Fraction(repr(float(value)))  # 0.1 -> 1/10, not the binary float
    elif isinstance(value, str):
        ratio, count = _RATIO.match(value), _COUNT.match(value)
        if count:
            return parse_fraction(int(count.group(1)))
        try:
            if ratio:
                frac = Fraction(int(ratio.group(1)), int(ratio.group(2)))
            else:
                frac = Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise SplitError(f'bad labeled fraction {value!r}: give a fraction such as 1/16 or '
                             '0.0625, or a count of images such as 92') from None
    else:
        raise SplitError(f'bad labeled fraction {value!r} of type {type(value).__name__}')
    if not 0 < frac <= 1:
        raise SplitError(f'bad labeled fraction {value!r}: a fraction must be in (0, 1]; for a '
                         'count of images give an integer such as 92')
    return frac


def fraction_name(value):
    """Folder name of a labeled-set size: ``'1/16'`` -> ``'1-16'``, ``0.3`` -> ``'3-10'``,
    ``92`` -> ``'92'``."""
    size = parse_fraction(value)
    if isinstance(size, int):
        return str(size)
    return f'{size.numerator}-{size.denominator}'


def num_labeled(total, value):
    """Number of labeled images out of ``total``: a count as given, or
    ``max(1, ceil(fraction * total))`` computed exactly."""
    if total < 1:
        raise SplitError('cannot split an empty list of images')
    size = parse_fraction(value)
    if isinstance(size, int):
        if size > total:
            raise SplitError(f'bad labeled count {size}: there are only {total} images')
        return size
    return max(1, -(-total * size.numerator // size.denominator))


def seeded_split(stems, value, seed=0):
    """Draw a labeled subset of ``stems`` deterministically for ``seed``.

    Args:
        stems: all ids (any order; duplicates are an error).
        value: labeled fraction or count, see :func:`parse_fraction`.
        seed: non-negative int for ``numpy.random.default_rng``.

    Returns:
        tuple[list[str], list[str]]: sorted labeled and unlabeled stems; together all stems.
    """
    stems = sorted(stems)
    dups = sorted({a for a, b in zip(stems, stems[1:]) if a == b})
    if dups:
        raise SplitError(f'duplicate id(s) in the list of images: {", ".join(dups[:10])}')
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SplitError(f'bad seed {seed!r}: give a non-negative integer')
    k = num_labeled(len(stems), value)
    order = np.random.default_rng(int(seed)).permutation(len(stems))
    chosen = np.zeros(len(stems), dtype=bool)
    chosen[order[:k]] = True
    labeled = [s for s, c in zip(stems, chosen) if c]
    unlabeled = [s for s, c in zip(stems, chosen) if not c]
    return labeled, unlabeled


def list_stems(img_dir, suffix='.jpg'):
    """Stems of the files ending in ``suffix`` under ``img_dir``, recursively, as mmseg lists
    them without an ann_file (``sub/dir/name`` for ``img_dir/sub/dir/name<suffix>``), sorted."""
    img_dir = str(img_dir)
    if not osp.isdir(img_dir):
        raise SplitError(f'image folder not found: {img_dir}')
    stems = []
    for root, dirs, files in os.walk(img_dir):
        dirs.sort()
        rel = osp.relpath(root, img_dir)
        for name in files:
            if name.endswith(suffix) and len(name) > len(suffix) and not name.startswith('.'):
                stem = name[:-len(suffix)]
                stems.append(stem if rel == '.' else f'{rel}/{stem}'.replace(os.sep, '/'))
    if not stems:
        raise SplitError(f'no *{suffix} files under {img_dir} (is --suffix right?)')
    return sorted(stems)


def read_stems(path):
    """Stems of an mmseg ann_file (one per line; blank lines ignored), in file order."""
    path = str(path)
    if not osp.isfile(path):
        raise SplitError(f'stem list not found: {path}')
    stems = []
    with open(path, encoding='utf-8-sig') as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if len(fields) > 1:
                raise SplitError(f'{path}:{lineno}: malformed line {line.strip()!r}: expected '
                                 'one stem per line (use `convert` for IMAGE LABEL pairs)')
            stems.extend(fields)
    if not stems:
        raise SplitError(f'{path}: the stem list is empty')
    return stems
