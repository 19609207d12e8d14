"""The annotator cache (format, atomic writes, stale entries) and its loading transforms."""
import os

import numpy as np
import pytest
import torch
from mmseg.registry import TRANSFORMS

from conformalsam_mmseg.annotators import cache as cache_mod
from conformalsam_mmseg.annotators.cache import (AnnotatorCache, CacheEntryError,
                                                 classes_hash, dequantize, read_entry,
                                                 read_header, topk_to_dense, write_entry,
                                                 write_manifest)
from conformalsam_mmseg.datasets.transforms import annotator_output  # noqa: F401  (registers)

CLASSES = ['background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle']
COMMAND = ('python tools/generate_pseudo_labels.py configs/x.py --annotator simulated '
           '--split unlabeled --out CACHE --topk 3')


def _probs(k=6, h=20, w=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(k, h, w, generator=g) * 3, dim=0)


@pytest.mark.parametrize('codec', ['zlib', 'none'])
def test_round_trip_error_bound_and_order(tmp_path, codec):
    probs = _probs()
    path = write_entry(str(tmp_path), probs, stem='img1', class_names=CLASSES,
                       annotator='SimulatedAnnotator', topk=3, codec=codec)
    assert path == str(tmp_path / 'img1.topk')
    entry = read_entry(path)
    assert entry.index.shape == entry.prob.shape == (3, 20, 30)
    assert entry.index.dtype == entry.prob.dtype == np.uint8
    meta = entry.meta
    assert (meta['stem'], meta['height'], meta['width'], meta['topk'], meta['num_classes'],
            meta['annotator'], meta['codec'], meta['version']) == (
                'img1', 20, 30, 3, 6, 'SimulatedAnnotator', codec, 2)
    assert meta['classes_sha1'] == classes_hash(CLASSES)
    assert read_header(path) == meta

    values, order = torch.topk(probs, 3, dim=0)
    assert np.array_equal(entry.index, order.numpy())            # rank 0 = most probable
    stored = dequantize(entry.prob)
    assert np.abs(stored - values.numpy()).max() <= 1 / 510 + 1e-7
    assert (np.diff(entry.prob.astype(int), axis=0) <= 0).all()  # non-increasing with rank
    # dense reconstruction: stored probabilities at their classes, 0 elsewhere
    dense = topk_to_dense(entry.index, entry.prob, 6)
    expected = torch.zeros_like(probs).scatter_(0, order, values)
    assert (dense - expected).abs().max() <= 1 / 510 + 1e-7


def test_payload_layouts_and_version_1(tmp_path):
    import zlib
    probs = _probs()
    values, order = torch.topk(probs, 3, dim=0)
    expected = np.concatenate([order.numpy().astype(np.uint8), cache_mod.quantize(values)])
    expected = expected.transpose(1, 2, 0)
    n = 20 * 30 * 6
    payloads = {}
    for codec, layout in (('none', 'pixels'), ('zlib', 'planes')):
        path = write_entry(str(tmp_path / codec), probs, stem='img1', class_names=CLASSES,
                           annotator='x', topk=3, codec=codec)
        entry = read_entry(path)
        assert entry.meta['layout'] == layout
        assert entry.map.shape == (20, 30, 6) and entry.map.flags.c_contiguous
        assert entry.map.flags.writeable and entry.topk == 3
        assert np.array_equal(entry.map, expected)
        data = open(path, 'rb').read()
        payload = data[len(data) - entry.meta['payload_bytes']:]
        payloads[codec] = payload if codec == 'none' else zlib.decompress(payload)
    # 'pixels': pixel (y, x) holds its 3 classes by rank, then their 3 probabilities
    y, x = 7, 11
    assert list(payloads['none'][(y * 30 + x) * 6:][:6]) == list(expected[y, x])
    assert payloads['none'] == expected.tobytes()
    # 'planes': plane j is value j of every pixel
    assert payloads['zlib'] == np.ascontiguousarray(expected.transpose(2, 0, 1)).tobytes()
    assert len(payloads['zlib']) == n

    # files written by hand from the documented format
    meta = read_entry(str(tmp_path / 'none' / 'img1.topk')).meta
    # version 1: no 'layout' key, always planes
    old = _hand_written(tmp_path / 'old.topk', meta, payloads['zlib'], version=1, layout=None,
                        codec='none')
    old_entry = read_entry(old)
    assert old_entry.meta['version'] == 1 and 'layout' not in old_entry.meta
    assert np.array_equal(old_entry.map, expected)
    assert np.array_equal(old_entry.index, order.numpy())
    assert np.array_equal(old_entry.prob, cache_mod.quantize(values))
    # zlib with 'pixels' (no writer here makes it, a reader must take it): a writable map
    packed = zlib.compress(payloads['none'])
    entry = read_entry(_hand_written(tmp_path / 'zp.topk', meta, packed, codec='zlib',
                                     layout='pixels', payload_bytes=len(packed)))
    assert np.array_equal(entry.map, expected) and entry.map.flags.writeable

    # headers that do not describe their payload are refused, by load and by is_valid
    bad = {
        'layout None in a version-2': dict(layout=None),
        "layout 'rows'": dict(layout='rows'),
        "layout 'pixels' in a version-1": dict(version=1),
        "unknown codec 'lz4'": dict(codec='lz4'),
        f"bad payload_bytes: '{n}'": dict(payload_bytes=str(n)),
        'bad height: 20.0': dict(height=20.0),
        'bad topk: 0': dict(topk=0),
        f'payload_bytes {n - 1} for 20 x 30 x 2 x 3': dict(payload_bytes=n - 1),
    }
    cache = AnnotatorCache(str(tmp_path))
    for reason, change in bad.items():
        _hand_written(tmp_path / 'img2.topk', meta, payloads['none'], **change)
        with pytest.raises(ValueError, match=reason):
            read_entry(str(tmp_path / 'img2.topk'))
        with pytest.raises(CacheEntryError, match='unreadable'):
            cache.load('img2')
        assert not cache.is_valid('img2')


def _hand_written(path, meta, payload, **changes):
    """A cache file from ``meta`` with ``changes`` (None: drop the key) and ``payload``."""
    import json
    import struct
    meta = dict(meta, **changes, stem=path.stem)
    meta = {k: v for k, v in meta.items() if v is not None}
    head = json.dumps(meta).encode()
    path.write_bytes(b'CSAMTOPK' + struct.pack('<I', len(head)) + head + payload)
    return str(path)


def test_quantisation_bound_is_tight_over_all_values():
    p = torch.linspace(0, 1, 100001)
    err = (dequantize(torch.from_numpy(cache_mod.quantize(p))) - p).abs().max()
    assert err <= 1 / 510 + 1e-7 and err > 1 / 510 - 1e-4


def test_padded_pixels_rebuild_as_zero():
    index = np.array([[[0, 255]], [[1, 255]]], np.uint8)
    prob = np.array([[[200, 255]], [[55, 255]]], np.uint8)
    dense = topk_to_dense(index, prob, 3)
    assert torch.allclose(dense[:, 0, 0], torch.tensor([200 / 255, 55 / 255, 0.]))
    assert torch.equal(dense[:, 0, 1], torch.zeros(3))


def test_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        write_entry(str(tmp_path), _probs() * 3, stem='a', class_names=CLASSES,
                    annotator='x', topk=2)
    with pytest.raises(ValueError, match='topk'):
        write_entry(str(tmp_path), _probs(), stem='a', class_names=CLASSES, annotator='x',
                    topk=7)
    with pytest.raises(ValueError, match='class names'):
        write_entry(str(tmp_path), _probs(), stem='a', class_names=CLASSES[:3],
                    annotator='x', topk=2)
    assert os.listdir(tmp_path) == []


def test_atomic_write_leaves_nothing_on_a_crash(tmp_path, monkeypatch):
    write_entry(str(tmp_path), _probs(seed=1), stem='old', class_names=CLASSES,
                annotator='x', topk=2)
    before = (tmp_path / 'old.topk').read_bytes()
    opened = []

    def crash(f, data):
        opened.append(f.name)
        f.write(data[:100])  # half-written...
        raise KeyboardInterrupt('killed mid-write')

    monkeypatch.setattr(cache_mod, '_write_all', crash)
    for stem in ('new', 'old'):
        with pytest.raises(KeyboardInterrupt):
            write_entry(str(tmp_path), _probs(seed=2), stem=stem, class_names=CLASSES,
                        annotator='x', topk=2)
    assert len(opened) == 2
    assert sorted(os.listdir(tmp_path)) == ['old.topk']  # no new.topk, no temp file left
    assert (tmp_path / 'old.topk').read_bytes() == before  # the old entry is intact
    read_entry(str(tmp_path / 'old.topk'))


def test_missing_and_stale_entries_name_the_image_and_the_command(tmp_path):
    write_manifest(str(tmp_path), dict(command=COMMAND, classes=CLASSES))
    cache = AnnotatorCache(str(tmp_path), num_classes=6, class_names=CLASSES,
                           annotator='SimulatedAnnotator', topk=3)
    with pytest.raises(CacheEntryError) as info:
        cache.load('2008_000123', height=20, width=30, img_path='JPEGImages/2008_000123.jpg')
    message = str(info.value)
    assert '2008_000123' in message and 'does not exist' in message and COMMAND in message

    write_entry(str(tmp_path), _probs(), stem='2008_000123', class_names=CLASSES,
                annotator='SimulatedAnnotator', topk=3)
    assert cache.load('2008_000123', height=20, width=30).index.shape == (3, 20, 30)
    assert cache.is_valid('2008_000123', height=20, width=30)
    stale = {
        'different class list': AnnotatorCache(
            str(tmp_path), class_names=list(reversed(CLASSES))),
        '6 classes, expected 7': AnnotatorCache(str(tmp_path), num_classes=7),
        'made by SimulatedAnnotator': AnnotatorCache(str(tmp_path), annotator='CLIPSeg'),
        'top-3': AnnotatorCache(str(tmp_path), topk=2),
    }
    for reason, other in stale.items():
        with pytest.raises(CacheEntryError, match=reason) as info:
            other.load('2008_000123', height=20, width=30)
        assert 'stale' in str(info.value) and COMMAND in str(info.value)
        assert '2008_000123' in str(info.value)
        assert not other.is_valid('2008_000123', height=20, width=30)
    with pytest.raises(CacheEntryError, match='20 x 30 .* image is 40 x 60'):
        cache.load('2008_000123', height=40, width=60)

    # another format version, and a truncated file
    path = tmp_path / '2008_000123.topk'
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"version": 2', b'"version": 9'))
    with pytest.raises(CacheEntryError, match='format version 9'):
        cache.load('2008_000123', height=20, width=30)
    path.write_bytes(data[:-10])
    assert not cache.is_valid('2008_000123', height=20, width=30)
    with pytest.raises(CacheEntryError, match='truncated'):
        cache.load('2008_000123', height=20, width=30)
    path.write_bytes(data + b'xx')
    with pytest.raises(CacheEntryError, match='too long'):
        cache.load('2008_000123', height=20, width=30)
    # a header without a key the reader needs, or not a JSON object
    path.write_bytes(data.replace(b'"payload_bytes"', b'"payload_bytez"'))
    with pytest.raises(CacheEntryError, match='header without payload_bytes'):
        cache.load('2008_000123', height=20, width=30)
    head = b'[1, 2]'
    path.write_bytes(b'CSAMTOPK' + len(head).to_bytes(4, 'little') + head)
    with pytest.raises(CacheEntryError, match='not an annotator cache file'):
        cache.load('2008_000123', height=20, width=30)
    assert not cache.is_valid('2008_000123', height=20, width=30)


def test_without_a_manifest_the_message_gives_the_command_template(tmp_path):
    with pytest.raises(CacheEntryError,
                       match=r'generate_pseudo_labels.py CONFIG --annotator TYPE'):
        AnnotatorCache(str(tmp_path)).load('x')


# --- the loading transforms --------------------------------------------------------------
K = 64  # one class per 8 x 8 block of the structured image


def _block_ids(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy // 9) * 8 + (xx // 13)) % K


def _color(ids):
    """A distinct BGR colour per block id, never black (black = padding): the image says which
    block a pixel came from (red = id + 1)."""
    return np.stack([(ids * 7) % 256, (ids * 13) % 256, ids + 1], axis=-1).astype(np.uint8)


@pytest.fixture(params=['zlib', 'none'])  # layouts 'planes' and 'pixels'
def structured_cache(tmp_path, request):
    h, w = 70, 101
    ids = _block_ids(h, w)
    probs = torch.full((K, h, w), 0.1 / (K - 2))
    t = torch.from_numpy(ids).long()
    probs.scatter_(0, t[None], 0.6)
    probs.scatter_(0, ((t + 1) % K)[None], 0.3)
    classes = [f'c{i}' for i in range(K)]
    write_entry(str(tmp_path), probs, stem='frame_001', class_names=classes,
                annotator='SimulatedAnnotator', topk=2, codec=request.param)
    return tmp_path, ids, classes


def _results(ids):
    img = _color(ids)
    return dict(img=img, img_path='/data/images/frame_001.png', ori_shape=img.shape[:2],
                img_shape=img.shape[:2], gt_seg_map=ids.astype(np.uint8),
                seg_fields=['gt_seg_map'], reduce_zero_label=False)


def test_annotator_fields_stay_aligned_through_the_pipeline(structured_cache):
    cache_dir, ids, classes = structured_cache
    cases = set()
    for seed in range(12):
        np.random.seed(seed)
        cases.add(_check_pipeline(cache_dir, ids, classes))
    # both smaller-than-crop (padded) and larger (cropped) draws, flipped and not
    assert {padded for padded, _ in cases} == {True, False}
    assert {flip for _, flip in cases} == {True, False}


def _check_pipeline(cache_dir, ids, classes):
    pipeline = [
        TRANSFORMS.build(t) for t in [
            dict(type='LoadAnnotatorOutput', cache_dir=str(cache_dir), num_classes=K,
                 classes=classes, topk=2),
            dict(type='RandomRescale', ratio_range=(0.5, 2.0), interpolation='nearest'),
            dict(type='RandomCrop', crop_size=(64, 64)),
            dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
            dict(type='PadSegFields', size=(64, 64), pad_val=dict(img=0, seg=255)),
            dict(type='PackAnnotatorOutput'),
        ]
    ]
    results = _results(ids)
    for t in pipeline:
        results = t(results)
    sample = results['data_samples']
    img = results['inputs'].permute(1, 2, 0).numpy()  # BGR, (64, 64, 3)
    index = sample.annotator_topk_index.data
    prob = sample.annotator_topk_prob.data
    gt = sample.gt_sem_seg.data[0]
    assert index.shape == prob.shape == (2, 64, 64)
    assert index.dtype == prob.dtype == torch.uint8
    assert sample.annotator_topk == 2

    pad_region = torch.from_numpy(img[..., 2] == 0)
    assert torch.equal(gt == 255, pad_region)
    assert torch.equal(index[0] == 255, pad_region) and torch.equal(index[1] == 255,
                                                                     pad_region)
    assert (prob[:, pad_region] == 255).all()
    inside = ~pad_region
    img_ids = torch.from_numpy(img[..., 2].astype(np.int64)) - 1  # red channel = id + 1
    assert torch.equal(gt[inside].long(), img_ids[inside])
    assert torch.equal(index[0][inside].long(), img_ids[inside])
    assert torch.equal(index[1][inside].long(), (img_ids[inside] + 1) % K)
    assert (prob[0][inside] == 153).all() and (prob[1][inside] == 76).all()  # 0.6, 0.3
    return bool(pad_region.any()), sample.metainfo['flip']


def test_k1_entries_and_mmcv_pad_mistake(tmp_path):
    ids = _block_ids(30, 40)
    probs = torch.nn.functional.one_hot(torch.from_numpy(ids).long(), K).permute(2, 0, 1)
    write_entry(str(tmp_path), probs.float(), stem='frame_001', class_names=[str(i) for i in
                                                                            range(K)],
                annotator='x', topk=1)
    load = TRANSFORMS.build(dict(type='LoadAnnotatorOutput', cache_dir=str(tmp_path),
                                 num_classes=K))
    results = load(_results(ids))
    # one field: channel 0 the class, channel 1 its probability (k = 1 keeps a channel axis)
    assert results['annotator_topk_map'].shape == (30, 40, 2)
    assert np.array_equal(results['annotator_topk_map'][..., 0], ids)
    assert (results['annotator_topk_map'][..., 1] == 255).all()
    results = TRANSFORMS.build(dict(type='Resize', scale=(80, 60), keep_ratio=True))(results)
    assert results['annotator_topk_map'].shape == (60, 80, 2)
    # mmcv's Pad does not pad seg fields other than gt_seg_map: packing says what to use
    padded = TRANSFORMS.build(dict(type='Pad', size=(96, 96)))(dict(results))
    with pytest.raises(ValueError, match='PadSegFields'):
        TRANSFORMS.build(dict(type='PackAnnotatorOutput'))(padded)
    packed = TRANSFORMS.build(dict(type='PackAnnotatorOutput'))(
        TRANSFORMS.build(dict(type='PadSegFields', size=(96, 96)))(results))
    assert packed['data_samples'].annotator_topk_index.data.shape == (1, 96, 96)


def test_loading_checks_size_and_placement(tmp_path, structured_cache):
    cache_dir, ids, classes = structured_cache
    load = TRANSFORMS.build(dict(type='LoadAnnotatorOutput', cache_dir=str(cache_dir),
                                 num_classes=K))
    results = _results(ids)
    results['img'] = results['img'][:50]
    with pytest.raises(ValueError, match='right after LoadImageFromFile'):
        load(results)
    results['ori_shape'] = (50, 101)
    with pytest.raises(CacheEntryError, match='frame_001'):
        load(results)
    missing = TRANSFORMS.build(dict(type='LoadAnnotatorOutput', cache_dir=str(tmp_path / 'no'),
                                    num_classes=K))
    with pytest.raises(CacheEntryError, match='/data/images/frame_001.png'):
        missing(_results(ids))


@pytest.mark.parametrize('channels', [2, 4, 6, 128, 129, 200])
def test_packing_splits_any_map_into_planes(channels):
    from conformalsam_mmseg.datasets.transforms.annotator_output import _planes
    arr = np.random.default_rng(0).integers(0, 256, (30, 40, channels), dtype=np.uint8)
    for view in (arr, arr[3:25, 5:33], arr[:, ::-1]):  # whole, a crop, a flip
        planes = _planes(view)
        assert planes.flags.c_contiguous and np.array_equal(planes, view.transpose(2, 0, 1))


def test_pad_seg_fields_copies_nothing_already_at_the_size():
    pad = TRANSFORMS.build(dict(type='PadSegFields', size=(8, 6), pad_val=dict(img=0, seg=255)))
    img = np.ones((6, 8, 3), np.uint8)
    field = np.zeros((6, 8, 4), np.uint8)
    gt = np.zeros((6, 8), np.uint8)
    out = pad(dict(img=img, gt_seg_map=gt, annotator_topk_map=field,
                   seg_fields=['gt_seg_map', 'annotator_topk_map']))
    assert out['img'] is img and out['gt_seg_map'] is gt and out['annotator_topk_map'] is field
    assert out['pad_shape'] == (6, 8, 3) and out['img_shape'] == (6, 8)
    small = pad(dict(img=img[:4], gt_seg_map=gt[:4], annotator_topk_map=field[:4, :5],
                     seg_fields=['gt_seg_map', 'annotator_topk_map']))
    assert small['img'].shape == (6, 8, 3) and (small['img'][4:] == 0).all()
    assert small['annotator_topk_map'].shape == (6, 8, 4)
    assert (small['annotator_topk_map'][4:] == 255).all()
    assert (small['annotator_topk_map'][:, 5:] == 255).all()
    assert (small['annotator_topk_map'][:4, :5] == 0).all()


def test_packing_checks_the_map_against_k():
    pack = TRANSFORMS.build(dict(type='PackAnnotatorOutput'))
    img = np.zeros((6, 8, 3), np.uint8)
    results = dict(img=img, annotator_topk_map=np.zeros((6, 8, 3), np.uint8), annotator_topk=2)
    with pytest.raises(ValueError, match='3 channels, expected 2 x annotator_topk = 4'):
        pack(results)
    with pytest.raises(KeyError, match='exclusive_keys'):
        pack(dict(img=img))
