"""The data side of semi-supervised training: strong-view transforms, the dummy seg map of
unlabeled images, MultiBranch views of one crop, the multi-branch data preprocessor, the
multi-source sampler, and the semi-supervised dataset configs end to end on real CamVid."""
import copy
import math
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import DATA_SAMPLERS, MODELS, TRANSFORMS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import conformalsam_mmseg.datasets.samplers.semi_sampler  # noqa: F401  (registration)
import conformalsam_mmseg.datasets.transforms.dummy_seg  # noqa: F401
import conformalsam_mmseg.datasets.transforms.multi_branch  # noqa: F401
import conformalsam_mmseg.models.data_preprocessors  # noqa: F401
from conformalsam_mmseg.datasets.transforms import photometric
from conformalsam_mmseg.datasets.transforms.photometric import (adjust_brightness,
                                                                adjust_contrast, adjust_hue,
                                                                adjust_saturation)
from conftest import REPO, shared_data

SEMI_CONFIGS = osp.join(REPO, 'configs', '_base_', 'datasets', 'semi')
BRANCHES = ['sup', 'unsup_weak', 'unsup_strong1', 'unsup_strong2']
GRAY = dict(type='RandomGrayscale', prob=1.0, keep_channels=True,
            channel_weights=(0.114, 0.587, 0.299))
SEG_PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                        std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                        seg_pad_val=255)


def _results(img, **extra):
    h, w = img.shape[:2]
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), seg_fields=[], **extra)


def _random_image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _bgr(b, g, r):
    return np.array([[[b, g, r]]], np.uint8)


# --- ColorJitter ----------------------------------------------------------------------------
def test_brightness_is_a_blend_with_black():
    img = np.array([[[0, 10, 100], [101, 170, 200], [255, 3, 1]]], np.uint8)
    expected = np.array([[[0, 15, 150], [151, 255, 255], [255, 4, 1]]], np.uint8)  # floor(1.5 v)
    np.testing.assert_array_equal(adjust_brightness(img, 1.5), expected)
    np.testing.assert_array_equal(adjust_brightness(img, 1.0), img)
    assert not adjust_brightness(img, 0.0).any()


def test_contrast_blends_with_the_mean_of_the_grayscale_image():
    img = np.array([[[0, 0, 0], [200, 100, 50]]], np.uint8)
    mean = (0.0 + 0.114 * 200 + 0.587 * 100 + 0.299 * 50) / 2  # 48.225
    expected = np.floor(0.5 * img + 0.5 * mean).astype(np.uint8)
    np.testing.assert_array_equal(adjust_contrast(img, 0.5), expected)
    assert (adjust_contrast(img, 0.0) == 48).all()


def test_saturation_zero_gives_the_grayscale_image():
    img = _random_image()
    out = adjust_saturation(img, 0.0)
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    luma = 0.114 * b + 0.587 * g + 0.299 * r  # BGR order: red weighs 0.299
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.abs(out[..., 0] - np.floor(luma)).max() <= 1
    np.testing.assert_array_equal(adjust_saturation(_bgr(0, 0, 255), 0.0), _bgr(76, 76, 76))
    np.testing.assert_array_equal(adjust_saturation(img, 1.0), img)


def test_hue_shift_of_half_a_turn_maps_red_to_cyan():
    np.testing.assert_array_equal(adjust_hue(_bgr(0, 0, 255), 0.5), _bgr(255, 255, 0))
    np.testing.assert_array_equal(adjust_hue(_bgr(0, 255, 0), 0.5), _bgr(255, 0, 255))
    np.testing.assert_array_equal(adjust_hue(_bgr(0, 0, 255), 1 / 3), _bgr(0, 255, 0))
    np.testing.assert_array_equal(adjust_hue(_bgr(0, 0, 255), -1 / 3), _bgr(255, 0, 0))
    img = _random_image()
    np.testing.assert_array_equal(adjust_hue(img, 0.0), img)


def test_color_jitter_applies_the_drawn_factors_in_the_drawn_order(monkeypatch):
    jitter = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.5, contrast=0.5,
                                   saturation=0.5, hue=0.25, prob=1.0))
    img = _random_image()
    order, factors = np.array([3, 0, 2, 1]), (1.3, 0.7, 0.2, 0.1)
    monkeypatch.setattr(jitter, '_draw', lambda: (order, factors))
    out = jitter(_results(img.copy()))['img']
    expected = adjust_contrast(adjust_saturation(adjust_brightness(adjust_hue(
        img, 0.1), 1.3), 0.2), 0.7)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out.shape == img.shape


def test_color_jitter_draws_factors_in_torchvision_ranges():
    np.random.seed(0)
    jitter = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.5, contrast=0.5,
                                   saturation=0.5, hue=0.25, prob=0.8))
    draws = [jitter._draw() for _ in range(2000)]
    factors = np.array([f for _, f in draws])
    for i in range(3):
        assert 0.5 <= factors[:, i].min() < 0.52 and 1.48 < factors[:, i].max() <= 1.5
    assert -0.25 <= factors[:, 3].min() < -0.24 and 0.24 < factors[:, 3].max() <= 0.25
    assert len({tuple(o) for o, _ in draws}) == 24  # every order of the four adjustments
    no_hue = TRANSFORMS.build(dict(type='ColorJitter', brightness=1.0))
    assert all(f[1:] == (None, None, None) and 0 <= f[0] <= 2
               for _, f in (no_hue._draw() for _ in range(100)))


def test_color_jitter_probability():
    np.random.seed(0)
    jitter = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.5, contrast=0.5,
                                   saturation=0.5, hue=0.25, prob=0.8))
    img = _random_image(4, 4)
    changed = np.mean([not np.array_equal(jitter(_results(img.copy()))['img'], img)
                       for _ in range(1000)])
    assert 0.75 < changed < 0.85
    off = TRANSFORMS.build(dict(type='ColorJitter', brightness=0.5, prob=0.0))
    np.testing.assert_array_equal(off(_results(img.copy()))['img'], img)
    with pytest.raises(ValueError, match='hue'):
        TRANSFORMS.build(dict(type='ColorJitter', hue=0.6))


@pytest.mark.parametrize('cfg', [
    dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25, prob=1.0),
    dict(type='GaussianBlur', sigma_range=(1.0, 2.0), prob=1.0),
    GRAY,
], ids=lambda c: c['type'])
def test_photometric_transforms_change_only_the_image(cfg):
    np.random.seed(1)
    img = _random_image()
    label = np.random.default_rng(1).integers(0, 11, img.shape[:2]).astype(np.uint8)
    results = _results(img.copy(), gt_seg_map=label.copy(), img_path='a.jpg', flip=True,
                       scale_factor=(1.5, 1.5))
    results['seg_fields'] = ['gt_seg_map']
    before = copy.deepcopy(results)
    out = TRANSFORMS.build(cfg)(results)
    assert set(out) == set(before)
    for key in before:
        if key != 'img':
            np.testing.assert_equal(out[key], before[key], err_msg=key)
    assert out['img'].dtype == np.uint8 and out['img'].shape == img.shape
    assert not np.array_equal(out['img'], img)


def test_random_grayscale_as_configured_keeps_three_luma_channels():
    out = TRANSFORMS.build(GRAY)(_results(np.concatenate([_bgr(0, 0, 255), _bgr(0, 255, 0)], 1)))
    # floor(0.299 * 255) = 76 for red and floor(0.587 * 255) = 149 for green, as in PIL's 'L'
    np.testing.assert_array_equal(out['img'], [[[76] * 3, [149] * 3]])


# --- GaussianBlur ---------------------------------------------------------------------------
def test_gaussian_blur_keeps_the_mean_and_lowers_the_variance():
    np.random.seed(0)
    img = _random_image(64, 64)
    out = TRANSFORMS.build(dict(type='GaussianBlur', prob=1.0))(_results(img.copy()))['img']
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert abs(out.astype(float).mean() - img.astype(float).mean()) < 1.0
    assert out.astype(float).var() < 0.5 * img.astype(float).var()


def test_gaussian_blur_sigma_is_the_standard_deviation():
    # A thin line blurred with sigma has a cross profile of spread (variance) sigma**2.
    img = np.zeros((41, 41, 3), np.uint8)
    img[:, 20] = 255
    blur = TRANSFORMS.build(dict(type='GaussianBlur', sigma_range=(2.0, 2.0), prob=1.0))
    profile = blur(_results(img))['img'][20, :, 0].astype(float)
    x = np.arange(41) - 20
    assert abs((profile * x**2).sum() / profile.sum() - 4.0) < 0.15


def test_gaussian_blur_draws_sigma_in_range_and_covers_three_sigma(monkeypatch):
    calls = []

    def record(img, ksize, sigmaX, sigmaY, borderType):
        calls.append((ksize, sigmaX, sigmaY, borderType))
        return img
    monkeypatch.setattr(photometric.cv2, 'GaussianBlur', record)
    np.random.seed(0)
    blur = TRANSFORMS.build(dict(type='GaussianBlur', sigma_range=(0.1, 2.0), prob=0.5))
    for _ in range(400):
        blur(_results(_random_image(8, 8)))
    assert 160 < len(calls) < 240  # p = 0.5
    sigmas = np.array([c[1] for c in calls])
    assert 0.1 <= sigmas.min() < 0.2 and 1.9 < sigmas.max() <= 2.0
    for (kh, kw), sx, sy, border in calls:
        assert kh == kw == 2 * math.ceil(3 * sx) + 1 and sx == sy
        assert border == cv2.BORDER_REPLICATE  # PIL repeats edge pixels
    calls.clear()
    TRANSFORMS.build(dict(type='GaussianBlur', prob=1.0, kernel_size=5))(
        _results(_random_image(8, 8)))
    assert calls[0][0] == (5, 5)


# --- the dummy seg map of unlabeled images --------------------------------------------------
def test_dummy_seg_map_is_zeros_of_the_image_size_in_seg_fields():
    out = TRANSFORMS.build(dict(type='LoadDummySegMap'))(_results(_random_image(30, 50)))
    assert out['gt_seg_map'].shape == (30, 50) and out['gt_seg_map'].dtype == np.uint8
    assert not out['gt_seg_map'].any() and out['seg_fields'] == ['gt_seg_map']
    with pytest.raises(ValueError, match='must not load annotations'):
        TRANSFORMS.build(dict(type='LoadDummySegMap'))(out)


@pytest.mark.parametrize('seed', range(6))
def test_dummy_seg_map_moves_with_the_image(seed):
    np.random.seed(seed)
    h, w = 90, 120
    img = np.zeros((h, w, 3), np.uint8)
    img[20:50, 10:45] = 255  # a marked region, off-centre so a flip shows
    results = TRANSFORMS.build(dict(type='LoadDummySegMap'))(_results(img))
    plain = copy.deepcopy(results)
    results['gt_seg_map'][img[..., 0] > 0] = 1  # mark the map too, to see where it goes
    geometric = [TRANSFORMS.build(t) for t in (
        dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=1.0),
        dict(type='RandomFlip', prob=0.5))]
    state = np.random.get_state()
    for t in geometric:
        results = t(results)
    np.random.set_state(state)
    for t in geometric:
        plain = t(plain)
    seg, marked = results['gt_seg_map'], (results['img'][..., 0] > 127).astype(np.uint8)
    assert seg.shape == marked.shape == plain['gt_seg_map'].shape
    # nearest (map) and bilinear (image) resizing may disagree only on the region's rim
    rim = cv2.morphologyEx(marked, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    assert not ((seg != marked) & ~rim).any()
    assert not plain['gt_seg_map'].any()  # the real dummy map stays all zeros


def test_random_crop_with_cat_max_ratio_below_one_still_crops_a_dummy_map():
    np.random.seed(0)
    results = TRANSFORMS.build(dict(type='LoadDummySegMap'))(_results(_random_image(60, 80)))
    out = TRANSFORMS.build(dict(type='RandomCrop', crop_size=(32, 32), cat_max_ratio=0.75))(
        results)
    assert out['img'].shape[:2] == out['gt_seg_map'].shape == (32, 32)


# --- MultiBranch: views of one crop ---------------------------------------------------------
def _position_image(h=120, w=160):
    """B and G encode the column and row: any geometric change shows in the pixel values."""
    y, x = np.mgrid[:h, :w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)],
                    -1).astype(np.uint8)


def _views_pipeline(**branches):
    return [TRANSFORMS.build(t) for t in (
        dict(type='LoadDummySegMap'),
        dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=1.0),
        dict(type='RandomFlip', prob=0.5),
        dict(type='MultiBranch', branch_field=BRANCHES, **branches))]


@pytest.mark.parametrize('seed', range(6))
def test_weak_and_strong_views_share_the_crop(seed):
    np.random.seed(seed)
    pack = dict(type='PackSegInputs')
    strong = [dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5, hue=0.25,
                   prob=1.0), GRAY, dict(type='GaussianBlur', prob=1.0), pack]
    results = _results(_position_image())
    # strong branches first: each branch must start from the crop, not from another's output
    for t in _views_pipeline(unsup_strong1=[GRAY, pack], unsup_strong2=strong,
                             unsup_weak=[pack]):
        results = t(results)
    inputs, samples = results['inputs'], results['data_samples']
    assert set(inputs) == set(samples) == set(BRANCHES)
    assert inputs['sup'] is None and samples['sup'] is None
    weak = inputs['unsup_weak'].permute(1, 2, 0).numpy()
    assert (weak[..., 2] == 90).all() and not (weak[..., 0] == weak[..., 1]).all()  # colour
    # strong1 = grayscale of the weak crop, pixel for pixel: same crop, same flip
    weights = np.array(GRAY['channel_weights']) / sum(GRAY['channel_weights'])  # as mmcv
    luma = (weights * weak).sum(2).astype(np.uint8)
    np.testing.assert_array_equal(inputs['unsup_strong1'][0].numpy(), luma)
    keys = ('img_shape', 'ori_shape', 'scale_factor', 'flip', 'flip_direction')
    for branch in ('unsup_strong1', 'unsup_strong2'):
        assert inputs[branch].shape == inputs['unsup_weak'].shape
        assert all(samples[branch].metainfo[k] == samples['unsup_weak'].metainfo[k]
                   for k in keys)
        assert torch.equal(samples[branch].gt_sem_seg.data, samples['unsup_weak'].gt_sem_seg.data)
    assert not torch.equal(inputs['unsup_strong2'], inputs['unsup_weak'])


def test_multi_branch_checks_its_branches():
    with pytest.raises(ValueError, match='not in branch_field'):
        TRANSFORMS.build(dict(type='MultiBranch', branch_field=['sup'],
                              unsup=[dict(type='PackSegInputs')]))
    bad = TRANSFORMS.build(dict(type='MultiBranch', branch_field=['sup'], sup=[GRAY]))
    with pytest.raises(ValueError, match='PackSegInputs'):
        bad(_results(_random_image()))


@TRANSFORMS.register_module(force=True)
class _RecordBranchInput:
    """Test transform: records the arrays and seg_fields a branch receives."""
    seen = {}

    def __init__(self, branch):
        self.branch = branch

    def __call__(self, results):
        _RecordBranchInput.seen[self.branch] = dict(
            img=results['img'], big=results.get('big'), seg_fields=list(results['seg_fields']))
        return results


def test_multi_branch_exclusive_keys():
    img = _random_image()
    big = np.zeros(img.shape[:2] + (6, ), np.uint8)
    pack = dict(type='PackSegInputs')
    multi = TRANSFORMS.build(dict(
        type='MultiBranch', branch_field=BRANCHES, exclusive_keys=dict(unsup_weak=['big']),
        unsup_weak=[dict(type='_RecordBranchInput', branch='unsup_weak'), pack],
        unsup_strong1=[dict(type='_RecordBranchInput', branch='unsup_strong1'), pack],
        unsup_strong2=[dict(type='_RecordBranchInput', branch='unsup_strong2'), pack]))
    results = _results(img, big=big, gt_seg_map=np.zeros(img.shape[:2], np.uint8))
    results['seg_fields'] = ['gt_seg_map', 'big']
    out = multi(results)
    seen = _RecordBranchInput.seen
    # the weak view gets the exclusive field itself, the others neither it nor its seg field
    assert seen['unsup_weak']['big'] is big
    assert seen['unsup_weak']['seg_fields'] == ['gt_seg_map', 'big']
    for branch in ('unsup_strong1', 'unsup_strong2'):
        assert seen[branch]['big'] is None and seen[branch]['seg_fields'] == ['gt_seg_map']
    # everything else is a copy in every branch
    assert all(seen[b]['img'] is not img and np.array_equal(seen[b]['img'], img)
               for b in BRANCHES[1:])
    assert out['data_samples']['sup'] is None

    with pytest.raises(ValueError, match='does not make'):
        TRANSFORMS.build(dict(type='MultiBranch', branch_field=['sup'], sup=[pack],
                              exclusive_keys=dict(unsup_weak=['big'])))
    with pytest.raises(ValueError, match='two branches'):
        TRANSFORMS.build(dict(type='MultiBranch', branch_field=BRANCHES, unsup_weak=[pack],
                              unsup_strong1=[pack],
                              exclusive_keys=dict(unsup_weak=['big'], unsup_strong1=['big'])))


# --- MultiBranchDataPreprocessor ------------------------------------------------------------
def _packed(h, w, value=0):
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.full((1, h, w), value, dtype=torch.int64))
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w)))
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8), sample


def test_preprocessor_prepares_each_branch_and_pads_dummy_maps_with_255():
    pre = MODELS.build(dict(type='MultiBranchDataPreprocessor',
                            data_preprocessor=dict(SEG_PREPROCESSOR, size=(40, 48))))
    sup = [_packed(40, 48, 3), _packed(40, 40, 5)]
    unsup = [_packed(30, 48), _packed(40, 36), _packed(25, 20), _packed(40, 48)]
    data = dict(inputs={b: [None] * 6 for b in BRANCHES + ['unused']},
                data_samples={b: [None] * 6 for b in BRANCHES + ['unused']})
    for i, (img, s) in enumerate(sup):
        data['inputs']['sup'][i], data['data_samples']['sup'][i] = img, s
    for branch in BRANCHES[1:]:
        for i, (img, s) in enumerate(unsup):
            data['inputs'][branch][2 + i] = img.clone()
            data['data_samples'][branch][2 + i] = copy.deepcopy(s)
    out = pre(data, training=True)
    assert set(out['inputs']) == set(out['data_samples']) == set(BRANCHES)  # 'unused' dropped
    assert out['inputs']['sup'].shape == (2, 3, 40, 48)
    assert out['inputs']['sup'].dtype == torch.float32
    sup_gt = out['data_samples']['sup'][1].gt_sem_seg.data[0]
    assert (sup_gt[:, :40] == 5).all() and (sup_gt[:, 40:] == 255).all()
    for branch in BRANCHES[1:]:
        assert out['inputs'][branch].shape == (4, 3, 40, 48)
        for (img, _), sample in zip(unsup, out['data_samples'][branch]):
            h, w = img.shape[1:]
            gt = sample.gt_sem_seg.data[0]
            assert gt.shape == (40, 48)
            assert (gt[:h, :w] == 0).all() and (gt[h:] == 255).all() and (gt[:, w:] == 255).all()
    # the same normalisation as the wrapped preprocessor: RGB, ImageNet mean / std
    img = unsup[0][0]
    expected = (img[[2, 1, 0]].float() - torch.tensor([123.675, 116.28, 103.53])[:, None, None]
                ) / torch.tensor([58.395, 57.12, 57.375])[:, None, None]
    torch.testing.assert_close(out['inputs']['unsup_weak'][0, :, :30], expected)


def test_preprocessor_passes_plain_batches_to_the_wrapped_one():
    pre = MODELS.build(dict(type='MultiBranchDataPreprocessor',
                            data_preprocessor=dict(SEG_PREPROCESSOR, size=(32, 32))))
    plain = MODELS.build(dict(SEG_PREPROCESSOR, size=(32, 32)))
    batch = [_packed(32, 32, 1), _packed(32, 32, 2)]
    data = dict(inputs=[b[0] for b in batch], data_samples=[b[1] for b in batch])
    for training in (False, True):
        got = pre(copy.deepcopy(data), training)
        want = plain(copy.deepcopy(data), training)
        assert torch.equal(got['inputs'], want['inputs'])
        assert [s.gt_sem_seg.data.tolist() for s in got['data_samples']] == \
            [s.gt_sem_seg.data.tolist() for s in want['data_samples']]
    assert pre.device == torch.device('cpu')


# --- MultiSourceSampler ---------------------------------------------------------------------
def _sampler(sizes=(5, 24), ratio=(2, 4), **kwargs):
    dataset = torch.utils.data.ConcatDataset([list(range(n)) for n in sizes])
    kwargs.setdefault('seed', 0)
    return DATA_SAMPLERS.build(dict(type='MultiSourceSampler', dataset=dataset,
                                    batch_size=sum(ratio), source_ratio=list(ratio), **kwargs))


def _take(sampler, n):
    it = iter(sampler)
    return [next(it) for _ in range(n)]


def _by_source(indices, ratio=(2, 4), labeled=5):
    batches = np.array(indices).reshape(-1, sum(ratio))
    return batches[:, :ratio[0]].ravel(), batches[:, ratio[0]:].ravel() - labeled


def test_every_batch_holds_exactly_source_ratio_samples_of_each_source():
    batches = np.array(_take(_sampler(), 6 * 100)).reshape(100, 6)
    assert (batches[:, :2] < 5).all() and (batches[:, 2:] >= 5).all()
    assert (batches < 29).all() and (batches >= 0).all()


def test_sampler_is_deterministic_by_seed():
    assert _take(_sampler(seed=3), 300) == _take(_sampler(seed=3), 300)
    assert _take(_sampler(seed=3), 300) != _take(_sampler(seed=4), 300)
    unseeded = _sampler(seed=None)  # a random seed (broadcast under DDP), then fixed
    assert _take(unseeded, 60) == _take(unseeded, 60)
    later = _sampler(seed=3)
    later.set_epoch(1)
    assert _take(later, 300) != _take(_sampler(seed=3), 300)


def test_each_pass_visits_every_image_once_and_the_short_source_cycles():
    labeled, unlabeled = _by_source(_take(_sampler(), 6 * 60))  # 120 labeled, 240 unlabeled
    for k in range(len(labeled) // 5):  # 24 passes over the 5 labeled images ...
        assert sorted(labeled[5 * k:5 * k + 5]) == list(range(5))
    for k in range(len(unlabeled) // 24):  # ... while the unlabeled set is read 10 times
        assert sorted(unlabeled[24 * k:24 * k + 24]) == list(range(24))
    passes = {tuple(labeled[5 * k:5 * k + 5]) for k in range(24)}
    assert len(passes) > 10  # each pass is a new permutation


def test_ranks_read_disjoint_shards_without_repeats():
    ranks = [_by_source(_take(_sampler(rank=r, world_size=2), 6 * 36)) for r in range(2)]
    for k in range(3):  # unlabeled: 24 images, 12 per rank and pass
        shards = [set(u[12 * k:12 * k + 12]) for _, u in ranks]
        assert all(len(s) == 12 for s in shards)  # no repeat within a rank's pass
        assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(24))
    # labeled: 5 images on 2 ranks, padded to 6 (as DistributedSampler): 3 per rank and pass
    for k in range(8):
        shards = [list(lab[3 * k:3 * k + 3]) for lab, _ in ranks]
        assert all(len(set(s)) == 3 for s in shards)
        assert set(shards[0]) | set(shards[1]) == set(range(5))
        assert len(set(shards[0]) & set(shards[1])) == 1  # the one padded index
    assert _take(_sampler(rank=0, world_size=2), 120) != _take(_sampler(rank=1, world_size=2), 120)


def test_ranks_default_to_the_distributed_rank(monkeypatch):
    from conformalsam_mmseg.datasets.samplers import semi_sampler
    monkeypatch.setattr(semi_sampler, 'get_dist_info', lambda: (1, 2))
    assert _take(_sampler(), 120) == _take(_sampler(rank=1, world_size=2), 120)


def test_sampler_rejects_a_batch_size_that_is_not_the_sum_of_the_ratio():
    dataset = torch.utils.data.ConcatDataset([list(range(5)), list(range(24))])
    with pytest.raises(ValueError) as err:
        DATA_SAMPLERS.build(dict(type='MultiSourceSampler', dataset=dataset, batch_size=4,
                                 source_ratio=[2, 4]))
    assert 'batch size 4' in str(err.value) and 'sum(source_ratio) = 6' in str(err.value)
    with pytest.raises(ValueError, match='2 entries for 3 datasets'):
        DATA_SAMPLERS.build(dict(type='MultiSourceSampler', batch_size=6, source_ratio=[2, 4],
                                 dataset=torch.utils.data.ConcatDataset([[0], [1], [2]])))
    with pytest.raises(TypeError, match='ConcatDataset'):
        DATA_SAMPLERS.build(dict(type='MultiSourceSampler', dataset=list(range(9)),
                                 batch_size=6, source_ratio=[2, 4]))


# --- the configs ----------------------------------------------------------------------------
@pytest.mark.parametrize('name, crop, ratio', [
    ('camvid_semi', 160, [4, 8]), ('voc_classic_semi', 321, [2, 4]),
    ('voc_blended_semi', 513, [2, 4]), ('ade20k_semi', 512, [4, 8])])
def test_semi_configs_hold_the_unimatch_data_recipe(name, crop, ratio):
    cfg = Config.fromfile(osp.join(SEMI_CONFIGS, name + '.py'))
    loader = cfg.train_dataloader
    assert loader.sampler.type == 'MultiSourceSampler'
    assert loader.sampler.source_ratio == ratio
    assert loader.batch_size == loader.sampler.batch_size == sum(ratio)
    labeled, unlabeled = loader.dataset.labeled, loader.dataset.unlabeled
    assert loader.dataset.type == 'SemiDataset'
    assert labeled.ann_file.endswith('labeled.txt')
    assert unlabeled.ann_file == labeled.ann_file.replace('labeled.txt', 'unlabeled.txt')
    assert 'seg_map_path' not in unlabeled.data_prefix
    lab_types = [t.type for t in labeled.pipeline]
    unl_types = [t.type for t in unlabeled.pipeline]
    assert 'LoadCheckedAnnotations' in lab_types and 'LoadDummySegMap' not in lab_types
    assert 'LoadDummySegMap' in unl_types and not any('Annotations' in t for t in unl_types)
    for pipeline in (labeled.pipeline, unlabeled.pipeline):
        crops = [t for t in pipeline if t.type == 'RandomCrop']
        assert crops[0].crop_size == (crop, crop) and crops[0].cat_max_ratio == 1.0
        assert [t for t in pipeline if t.type == 'RandomRescale'][0].ratio_range == (0.5, 2.0)
        assert [t for t in pipeline if t.type == 'RandomFlip'][0].prob == 0.5
        assert pipeline[-1].type == 'MultiBranch' and pipeline[-1].branch_field == BRANCHES
    assert set(labeled.pipeline[-1]) == {'type', 'branch_field', 'sup'}
    assert set(unlabeled.pipeline[-1]) == {'type', 'branch_field', 'unsup_weak',
                                           'unsup_strong1', 'unsup_strong2'}
    assert unlabeled.pipeline[-1].unsup_weak == [dict(type='PackSegInputs')]
    strong = unlabeled.pipeline[-1].unsup_strong1
    assert strong == unlabeled.pipeline[-1].unsup_strong2 == cfg.unsup_strong_branch
    assert strong[0] == dict(type='ColorJitter', brightness=0.5, contrast=0.5, saturation=0.5,
                             hue=0.25, prob=0.8)
    assert strong[1] == dict(GRAY, prob=0.2)
    assert strong[2] == dict(type='GaussianBlur', sigma_range=(0.1, 2.0), prob=0.5)
    assert strong[3] == dict(type='PackSegInputs')
    assert cfg.val_dataloader.dataset.pipeline  # val / test come unchanged from the base


def test_unlabeled_images_need_no_label_files(tmp_path):
    """Only images on disk: the unlabeled pipeline never looks for a label file."""
    from mmengine.runner import Runner
    os.makedirs(tmp_path / 'camvid' / 'images' / 'train')
    for stem in ('a', 'b'):
        cv2.imwrite(str(tmp_path / 'camvid' / 'images' / 'train' / f'{stem}.jpg'),
                    _random_image(180, 240))
    (tmp_path / 'unlabeled.txt').write_text('a\nb\n')
    cfg = Config.fromfile(osp.join(SEMI_CONFIGS, 'camvid_semi.py'))
    dataset = dict(cfg.unlabeled_dataset, data_root=str(tmp_path),
                   ann_file=str(tmp_path / 'unlabeled.txt'))
    loader = Runner.build_dataloader(dict(
        dataset=dict(type='ConcatDataset', datasets=[dataset, copy.deepcopy(dataset)]),
        sampler=dict(type='MultiSourceSampler', batch_size=2, source_ratio=[1, 1]),
        batch_size=2, num_workers=0), seed=0)
    batch = next(iter(loader))
    assert not osp.exists(tmp_path / 'camvid' / 'labels')
    assert all(s.gt_sem_seg.data.max() == 0 for s in batch['data_samples']['unsup_weak'])
    assert 'seg_map_path' not in batch['data_samples']['unsup_weak'][0].metainfo


def test_camvid_semi_dataloader_end_to_end(tmp_path):
    """The config's train_dataloader on real CamVid, through MultiBranchDataPreprocessor."""
    from mmengine.runner import Runner
    camvid = shared_data('camvid')
    stems = sorted(f[:-4] for f in os.listdir(osp.join(camvid, 'images', 'train')))
    (tmp_path / 'labeled.txt').write_text('\n'.join(stems[:3]) + '\n')
    (tmp_path / 'unlabeled.txt').write_text('\n'.join(stems[3:9]) + '\n')
    cfg = Config.fromfile(osp.join(SEMI_CONFIGS, 'camvid_semi.py'))
    loader_cfg = cfg.train_dataloader
    loader_cfg.update(batch_size=6, num_workers=0, persistent_workers=False)
    loader_cfg.sampler.update(batch_size=6, source_ratio=[2, 4])
    labeled, unlabeled = loader_cfg.dataset.labeled, loader_cfg.dataset.unlabeled
    for dataset, ann in ((labeled, 'labeled.txt'), (unlabeled, 'unlabeled.txt')):
        dataset.update(data_root=osp.dirname(camvid), ann_file=str(tmp_path / ann))
    # Downscale the unlabeled images to 120x90 before the 160x160 crop: padding for certain.
    rescale = [t for t in unlabeled.pipeline if t.type == 'RandomRescale'][0]
    rescale.ratio_range = (0.5, 0.5)
    batch = next(iter(Runner.build_dataloader(loader_cfg, seed=0)))

    assert set(batch['inputs']) == set(batch['data_samples']) == set(BRANCHES)
    present = {b: [x is not None for x in batch['inputs'][b]] for b in BRANCHES}
    assert present['sup'] == [True] * 2 + [False] * 4
    for branch in BRANCHES[1:]:
        assert present[branch] == [False] * 2 + [True] * 4
    for i in range(2, 6):
        paths = {batch['data_samples'][b][i].img_path for b in BRANCHES[1:]}
        assert len(paths) == 1 and osp.basename(paths.pop())[:-4] in stems[3:9]
        assert batch['inputs']['unsup_weak'][i].shape == (3, 90, 120)

    pre = MODELS.build(dict(type='MultiBranchDataPreprocessor',
                            data_preprocessor=dict(SEG_PREPROCESSOR, size=cfg.crop_size)))
    out = pre(batch, training=True)
    assert out['inputs']['sup'].shape == (2, 3, 160, 160)
    sup_gt = torch.stack([s.gt_sem_seg.data for s in out['data_samples']['sup']])
    assert sup_gt.shape == (2, 1, 160, 160)
    assert set(sup_gt.unique().tolist()) <= set(range(11)) | {255}
    for branch in BRANCHES[1:]:
        assert out['inputs'][branch].shape == (4, 3, 160, 160)
        gt = torch.stack([s.gt_sem_seg.data[0] for s in out['data_samples'][branch]])
        assert gt.shape == (4, 160, 160)
        assert (gt[:, :90, :120] == 0).all()  # image pixels
        assert (gt[:, 90:] == 255).all() and (gt[:, :, 120:] == 255).all()  # padding
        assert (out['inputs'][branch][:, :, 90:] == 0).all()  # images padded with pad_val
