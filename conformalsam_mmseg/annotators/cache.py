"""The annotator cache: one compact file per image with its top-k classes and probabilities.

File ``<cache_dir>/<stem>.topk`` (``stem`` = the image file name without extension), format
version 2, little-endian::

    bytes 0-7     magic b'CSAMTOPK'
    bytes 8-11    uint32 N, the length of the header
    bytes 12-     N bytes of UTF-8 JSON header (see below)
    then          the payload: 2k uint8 values per pixel, zlib-compressed (codec 'zlib') or
                  stored as they are (codec 'none'):
                    values 0..k-1    index[j]: the class of rank j (0 = most probable)
                    values k..2k-1   prob[j]:  its probability, quantised
                  in one of two layouts (header key ``layout``):
                    'pixels'   an H x W x 2k array, C order (pixel after pixel)
                    'planes'   2k planes of H x W, C order

Writers choose the layout by codec. 'none' stores 'pixels': the training pipeline moves the
entry as one (H, W, 2k) seg field, and reads it straight into that array. 'zlib' stores
'planes': each plane is smooth, so it compresses to ~2/3 of the size of 'pixels' and inflates
faster; interleaving the planes after inflating costs a tenth of the inflation.

Header keys: ``format`` ('conformalsam.annotator_topk'), ``version`` (2), ``stem``,
``height``, ``width`` (the image's original size), ``topk`` (k), ``num_classes`` (K),
``classes_sha1`` (sha1 of the JSON list of class names, see :func:`classes_hash`),
``annotator`` (its registry name), ``codec``, ``layout``, ``payload_bytes``. Version 1 is
version 2 without ``layout``, always 'planes'; it is still read.

Quantisation: ``prob_u8 = round(p * 255)`` (round half to even), and dequantisation is
``p_hat = prob_u8 / 255``, so ``|p - p_hat| <= 1/510`` for every stored p in [0, 1]. Classes
outside the top-k are not stored; they read back as probability 0. Index values are class
indices 0..K-1 (K <= 255); after padding in a training pipeline the value 255 marks padded
pixels.

Writes are atomic: the file is written under a temporary name in the same folder and moved to
its final name with ``os.replace`` once complete (and fsync-ed), so a crash never leaves a
partial file under the final name. A crash can leave a hidden ``.<stem>.topk.*.tmp`` file
behind, which nothing reads (``find DIR -name '.*.tmp' -delete`` removes them).

This module needs only numpy, torch and the standard library, so a user can write the cache
from any environment (another machine, the foundation model's own code base) with
:func:`write_entry` and bring the files.
"""
import hashlib
import json
import os
import os.path as osp
import struct
import tempfile
import zlib
from typing import NamedTuple

import numpy as np
import torch

MAGIC = b'CSAMTOPK'
FORMAT = 'conformalsam.annotator_topk'
VERSION = 2
READ_VERSIONS = (1, 2)  # version 1: layout 'planes', not named in the header
SUFFIX = '.topk'
MANIFEST = 'cache_info.json'
CODECS = ('zlib', 'none')
LAYOUT_BY_CODEC = {'none': 'pixels', 'zlib': 'planes'}  # see the module docstring
MAX_CLASSES = 255  # index 255 is reserved for padded pixels
# the tools cache every class by default up to this many (a top-k cache raises the conformal
# score of a true class outside the top-k to 1; see docs/annotators.md, "Top-k truncation")
FULL_CACHE_MAX_CLASSES = 32
# probabilities may exceed [0, 1] by float rounding; anything further is a real error
_PROB_TOL = 1e-3


class CacheEntryError(RuntimeError):
    """A cache entry is missing, unreadable or stale; the message says how to (re)make it."""


class CacheEntry(NamedTuple):
    """One image's cached annotator output.

    ``map`` is the (H, W, 2k) uint8 payload; ``index`` and ``prob`` are (k, H, W) views of it:
    the class of rank j and its quantised probability.
    """
    map: np.ndarray
    meta: dict

    @property
    def topk(self):
        return self.map.shape[2] // 2

    @property
    def index(self):
        return self.map[..., :self.topk].transpose(2, 0, 1)

    @property
    def prob(self):
        return self.map[..., self.topk:].transpose(2, 0, 1)


def classes_hash(class_names):
    """sha1 hex digest of the JSON list of class names (order matters)."""
    names = [str(c) for c in class_names]
    return hashlib.sha1(json.dumps(names).encode('utf-8')).hexdigest()


def entry_path(cache_dir, stem):
    return osp.join(cache_dir, stem + SUFFIX)


def quantize(probs):
    """float probabilities in [0, 1] -> uint8 ``round(p * 255)`` (numpy or torch in, numpy out)."""
    p = torch.as_tensor(probs).float()
    return p.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()


def dequantize(prob_u8):
    """uint8 -> float32 ``v / 255`` (numpy in numpy out, torch in torch out)."""
    if isinstance(prob_u8, torch.Tensor):
        return prob_u8.float().div_(255)
    return np.asarray(prob_u8, np.float32) / np.float32(255)


def topk_to_dense(index, prob, num_classes, *, padded_value=255):
    """(K, H, W) float32 probabilities from top-k ``index``/``prob`` (k, H, W) (uint8 or already
    dequantised float); classes outside the top-k get 0. Pixels whose index is
    ``padded_value`` (padding) get all zeros. numpy or torch in, torch out."""
    index = torch.as_tensor(index)
    prob = torch.as_tensor(prob)
    if not prob.is_floating_point():
        prob = dequantize(prob)
    padded = index == padded_value
    idx = index.long().masked_fill(padded, 0)
    prob = prob.masked_fill(padded, 0)
    dense = torch.zeros((num_classes, ) + tuple(index.shape[1:]), dtype=prob.dtype,
                        device=prob.device)
    # scatter_add: the k indices of a pixel are distinct, except padded ones (all 0, prob 0)
    return dense.scatter_add_(0, idx, prob)


def default_topk(num_classes, topk=None, option='--topk'):
    """The k a tool caches: ``topk`` when given (checked against 1..K), else every class when
    K <= ``FULL_CACHE_MAX_CLASSES`` (32). With more classes there is no default: a
    ``ValueError`` says to choose k with ``option``.

    Every class is the default because a true class outside the cached top-k reads back as
    probability 0, i.e. LAC score 1, which forces the pixel-mode quantile to 1 for every alpha
    below the share of such pixels (:mod:`conformalsam_mmseg.conformal.truncation`)."""
    num_classes = int(num_classes)
    if topk is None:
        if num_classes <= FULL_CACHE_MAX_CLASSES:
            return num_classes
        raise ValueError(
            f'{num_classes} classes: choose the classes kept per pixel with {option} K (every '
            f'class is the default only up to {FULL_CACHE_MAX_CLASSES}); {option} '
            f'{num_classes} keeps all ({2 * num_classes} bytes per pixel before compression), '
            f'a smaller K is cheaper but gives a true class outside the top-K the score 1 '
            '(docs/annotators.md, "Top-k truncation")')
    if not 1 <= int(topk) <= num_classes:
        raise ValueError(f'{option} must be in 1..{num_classes} (the number of classes), got '
                         f'{topk}')
    return int(topk)


# --- writing ------------------------------------------------------------------------------
def encode_entry(probs, *, stem, class_names, annotator, topk, codec='zlib', level=6):
    """The bytes of a cache file for ``probs`` (K, H, W) in [0, 1]."""
    probs = torch.as_tensor(probs)
    if probs.dim() != 3:
        raise ValueError(f'probabilities must be (K, H, W), got shape {tuple(probs.shape)}')
    num_classes, height, width = probs.shape
    if len(class_names) != num_classes:
        raise ValueError(f'{len(class_names)} class names for {num_classes} probability maps')
    if num_classes > MAX_CLASSES:
        raise ValueError(f'the cache format stores class indices as uint8: at most '
                         f'{MAX_CLASSES} classes, got {num_classes}')
    if codec not in CODECS:
        raise ValueError(f'codec must be one of {CODECS}, got {codec!r}')
    k = int(topk)
    if not 1 <= k <= num_classes:
        raise ValueError(f'topk must be in 1..{num_classes}, got {topk}')
    probs = probs.detach().to('cpu', torch.float32)
    low, high = (float(v) for v in torch.aminmax(probs))
    if not (low >= -_PROB_TOL and high <= 1 + _PROB_TOL):  # NaN fails too
        raise ValueError(
            f'{stem}: annotator output must lie in [0, 1] to be cached (found {low:.4g} .. '
            f'{high:.4g}); normalise it (e.g. SEEMAnnotator(normalize="sum"))')
    values, index = torch.topk(probs, k, dim=0, sorted=True)
    planes = torch.cat([index.to(torch.uint8), torch.from_numpy(quantize(values))])
    layout = LAYOUT_BY_CODEC[codec]
    if layout == 'pixels':
        planes = planes.permute(1, 2, 0).contiguous()
    payload = planes.numpy().tobytes()
    if codec == 'zlib':
        payload = zlib.compress(payload, level)
    header = dict(format=FORMAT, version=VERSION, stem=str(stem), height=int(height),
                  width=int(width), topk=k, num_classes=int(num_classes),
                  classes_sha1=classes_hash(class_names), annotator=str(annotator),
                  codec=codec, layout=layout, payload_bytes=len(payload))
    head = json.dumps(header, sort_keys=True).encode('utf-8')
    return MAGIC + struct.pack('<I', len(head)) + head + payload


def write_entry(cache_dir, probs, *, stem, class_names, annotator, topk, codec='zlib',
                level=6, fsync=True):
    """Atomically write ``<cache_dir>/<stem>.topk``; returns its path."""
    data = encode_entry(probs, stem=stem, class_names=class_names, annotator=annotator,
                        topk=topk, codec=codec, level=level)
    path = entry_path(cache_dir, stem)
    atomic_write_bytes(path, data, fsync=fsync)
    return path


def atomic_write_bytes(path, data, fsync=True):
    """Write ``data`` to ``path`` through a temporary file in the same folder + os.replace."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(path) + '.',
                               suffix='.tmp')
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, 'wb') as f:
            _write_all(f, data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_UMASK = []


def _umask():
    if not _UMASK:
        mask = os.umask(0)
        os.umask(mask)
        _UMASK.append(mask)
    return _UMASK[0]


def _write_all(f, data):
    f.write(data)


# --- reading ------------------------------------------------------------------------------
def read_header(path):
    """The JSON header of a cache file (the payload is not read)."""
    with open(path, 'rb') as f:
        return _parse_header(f.read(12), f, path)[0]


def read_entry(path):
    """Read a cache file: a :class:`CacheEntry` (format checks only, no staleness checks).

    Raises ``ValueError`` for a file that is not a (complete) cache file of a readable version.
    """
    with open(path, 'rb') as f:
        meta, start = _parse_header(f.read(12), f, path)
        size, expected = os.fstat(f.fileno()).st_size - start, meta['payload_bytes']
        if size != expected:
            raise ValueError(f'{path}: {"truncated" if size < expected else "too long"} '
                             f'({size} of {expected} payload bytes)')
        # read straight into a writable array (torch warns on read-only ones): the map of an
        # uncompressed entry is this array, with no further copy
        data = np.empty(size, np.uint8)
        if f.readinto(data) != size:
            raise ValueError(f'{path}: truncated while reading')
    if meta['codec'] == 'zlib':
        try:
            data = np.frombuffer(zlib.decompress(data), np.uint8)
        except zlib.error as e:
            raise ValueError(f'{path}: corrupt payload ({e})') from None
    k, h, w = meta['topk'], meta['height'], meta['width']
    if data.size != 2 * k * h * w:
        raise ValueError(f'{path}: payload of {data.size} bytes, expected {h} x {w} x 2 x {k}')
    if meta.get('layout', 'planes') == 'pixels':
        return CacheEntry(data.reshape(h, w, 2 * k) if data.flags.writeable else
                          data.reshape(h, w, 2 * k).copy(), meta)
    return CacheEntry(_interleave(data.reshape(2 * k, h, w)), meta)


def _interleave(planes):
    """(c, H, W) planes -> a new contiguous (H, W, c) array."""
    import cv2  # here, not at the top: writing a cache needs no OpenCV
    if len(planes) <= 128:  # cv2.merge's channel limit; it is ~10x faster than numpy here
        return cv2.merge(list(planes))
    return np.array(planes.transpose(1, 2, 0), order='C')


_INT_KEYS = ('height', 'width', 'topk', 'num_classes', 'payload_bytes')
_HEADER_KEYS = _INT_KEYS + ('stem', 'classes_sha1', 'annotator', 'codec')


def _parse_header(first, f, path):
    """(header dict, payload offset) from the first 12 bytes and the open file after them.
    Raises ``ValueError`` for anything but a well-formed header of a readable version."""
    if len(first) < 12 or first[:8] != MAGIC:
        raise ValueError(f'{path}: not an annotator cache file (bad magic)')
    (n, ) = struct.unpack('<I', first[8:12])
    try:
        meta = json.loads(f.read(n).decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f'{path}: unreadable header') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise ValueError(f'{path}: not an annotator cache file (format '
                         f'{meta.get("format") if isinstance(meta, dict) else None!r})')
    problem = _header_problem(meta)
    if problem:
        raise ValueError(f'{path}: {problem}')
    return meta, 12 + n


def _header_problem(meta):
    version = meta.get('version')
    if version not in READ_VERSIONS:
        return (f'format version {version}, this code reads versions '
                + ' and '.join(map(str, READ_VERSIONS)))
    missing = [k for k in _HEADER_KEYS if k not in meta]
    if missing:
        return f'header without {", ".join(missing)}'
    for key in _INT_KEYS:
        low = 0 if key == 'payload_bytes' else 1
        if type(meta[key]) is not int or meta[key] < low:  # type(): True is not a size
            return f'header with a bad {key}: {meta[key]!r}'
    if not meta['topk'] <= meta['num_classes'] <= MAX_CLASSES:
        return f'header with topk {meta["topk"]} and num_classes {meta["num_classes"]}'
    if meta['codec'] not in CODECS:
        return f'unknown codec {meta["codec"]!r}'
    # version 1 has no layout key (always planes); version 2 must name one
    if version == 1 and 'layout' in meta or version > 1 and (
            meta.get('layout') not in LAYOUT_BY_CODEC.values()):
        return f'layout {meta.get("layout")!r} in a version-{version} header'
    if meta['codec'] == 'none' and (meta['payload_bytes']
                                    != 2 * meta['topk'] * meta['height'] * meta['width']):
        return (f'payload_bytes {meta["payload_bytes"]} for {meta["height"]} x '
                f'{meta["width"]} x 2 x {meta["topk"]} uncompressed values')
    return None


def stale_reason(meta, *, stem=None, height=None, width=None, num_classes=None,
                 classes_sha1=None, annotator=None, topk=None):
    """Why ``meta`` (a header that ``_parse_header`` accepted) does not match what the caller
    expects, or None when it matches. Arguments left as None are not checked."""
    if stem is not None and meta.get('stem') != stem:
        return f'it belongs to image {meta.get("stem")!r}'
    if height is not None and (meta['height'], meta['width']) != (height, width):
        return (f'it was made for an image of {meta["height"]} x {meta["width"]} (H x W), the '
                f'image is {height} x {width}')
    if num_classes is not None and meta['num_classes'] != num_classes:
        return f'it has {meta["num_classes"]} classes, expected {num_classes}'
    if classes_sha1 is not None and meta['classes_sha1'] != classes_sha1:
        return 'it was made with a different class list (names or order)'
    if annotator is not None and meta['annotator'] != annotator:
        return f'it was made by {meta["annotator"]}, expected {annotator}'
    if topk is not None and meta['topk'] != topk:
        return f'it holds the top-{meta["topk"]} classes, expected top-{topk}'
    return None


# --- the manifest and the error messages --------------------------------------------------
def write_manifest(cache_dir, info):
    """Write ``<cache_dir>/cache_info.json`` (how the cache was made) atomically."""
    data = dict(info, format=FORMAT, version=VERSION)
    atomic_write_bytes(osp.join(cache_dir, MANIFEST),
                       (json.dumps(data, indent=2, sort_keys=True) + '\n').encode('utf-8'),
                       fsync=False)


def read_manifest(cache_dir):
    """The manifest dict, or None when there is none (or it is unreadable)."""
    try:
        with open(osp.join(cache_dir, MANIFEST), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_command(cache_dir, manifest=None, stem=None):
    """The ``tools/generate_pseudo_labels.py`` command that (re)makes the entries of
    ``cache_dir`` (with ``stem``: the entry of that image): the command of the recorded run
    whose split holds the image, else the last run's, else a template to fill in.

    The manifest records each run (``splits``: one per split, with its image stems), so that an
    entry of the labeled split is not quoted the unlabeled split's command."""
    manifest = read_manifest(cache_dir) if manifest is None else manifest
    runs = (manifest or {}).get('splits') or {}
    if stem is not None and runs:
        for run in reversed(list(runs.values())):  # the latest run first
            if stem in run.get('stems', ()):
                return run['command']
        return ('python tools/generate_pseudo_labels.py CONFIG --annotator TYPE --split SPLIT '
                f'--out {cache_dir}   (no recorded run covered this image; runs: '
                + '; '.join(run['command'] for run in runs.values()) + ')')
    if manifest and manifest.get('command'):
        return manifest['command']
    return ('python tools/generate_pseudo_labels.py CONFIG --annotator TYPE --split SPLIT '
            f'--out {cache_dir}')


class AnnotatorCache:
    """Validated reads from one cache folder.

    Args:
        cache_dir: the folder written by ``tools/generate_pseudo_labels.py``.
        num_classes, class_names, annotator, topk: what entries must match (None: not
            checked; ``class_names`` checks names and order through their hash).
    """

    def __init__(self, cache_dir, *, num_classes=None, class_names=None, annotator=None,
                 topk=None):
        self.cache_dir = str(cache_dir)
        self.num_classes = num_classes
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if (self.class_names is not None and num_classes is not None
                and len(self.class_names) != num_classes):
            raise ValueError(f'{len(self.class_names)} class names for num_classes='
                             f'{num_classes}')
        self.classes_sha1 = None if class_names is None else classes_hash(self.class_names)
        self.annotator = annotator
        self.topk = topk
        self._manifest = None

    def command(self, stem=None):
        """The command that (re)makes the entry of image ``stem`` (see :func:`generate_command`)."""
        if self._manifest is None:
            self._manifest = read_manifest(self.cache_dir) or {}
        return generate_command(self.cache_dir, self._manifest, stem=stem)

    def path(self, stem):
        return entry_path(self.cache_dir, stem)

    def load(self, stem, *, height=None, width=None, img_path=None):
        """The :class:`CacheEntry` of image ``stem``, checked against the image size and the
        expected classes; a missing or stale entry raises :class:`CacheEntryError`."""
        path = self.path(stem)
        image = f"'{stem}'" + (f' ({img_path})' if img_path else '')
        try:
            entry = read_entry(path)
        except FileNotFoundError:
            raise CacheEntryError(
                f'no annotator output for image {image}: {path} does not exist. Make the '
                f'cache with\n    {self.command(stem)}') from None
        except ValueError as e:
            raise CacheEntryError(
                f'unreadable annotator output for image {image}: {e}. Delete it and remake '
                f'it with\n    {self.command(stem)}') from None
        reason = stale_reason(entry.meta, stem=stem, height=height, width=width,
                              num_classes=self.num_classes, classes_sha1=self.classes_sha1,
                              annotator=self.annotator, topk=self.topk)
        if reason:
            raise CacheEntryError(
                f'stale annotator output for image {image} in {path}: {reason}. Remake it '
                f'with\n    {self.command(stem)}')
        return entry

    def is_valid(self, stem, *, height=None, width=None):
        """True when the entry exists and passes :meth:`load`'s checks (header only)."""
        path = self.path(stem)
        try:
            with open(path, 'rb') as f:
                meta, start = _parse_header(f.read(12), f, path)
            complete = osp.getsize(path) == start + meta['payload_bytes']
        except (OSError, ValueError, KeyError):
            return False
        if not complete:
            return False
        return stale_reason(meta, stem=stem, height=height, width=width,
                            num_classes=self.num_classes, classes_sha1=self.classes_sha1,
                            annotator=self.annotator, topk=self.topk) is None
