"""UniMatch's CutMix source ("mix") batch: the batch u's images, loaded and augmented again.

The authors' loop is ``zip(trainloader_l, trainloader_u, trainloader_u)``: the unlabeled loader
read twice, both times in the order of one DistributedSampler (same seed, same epoch), so mix
image i is u image i with its own random crop and colours. Ours: MultiSourceSampler with
``source_repeats=[1, 2]``; the previous behaviour (distinct images) is the negative control."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.registry import DATA_SAMPLERS, MODELS

import conformalsam_mmseg  # noqa: F401
from conformalsam_mmseg.models.segmentors import UniMatch
from conftest import REPO

CONFIG = osp.join(REPO, 'configs', 'unimatch', 'unimatch_deeplabv3plus_effl0_camvid-1-8.py')


def authors_pairs(num_unlabeled, batch_size, seed=0, epoch=0):
    """(u index, mix index) of every unlabeled sample of an epoch of the authors' loop."""
    sampler = torch.utils.data.DistributedSampler(list(range(num_unlabeled)), num_replicas=1,
                                                  rank=0, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    u, mix = list(sampler), list(sampler)  # trainloader_u, iterated twice
    n = num_unlabeled // batch_size * batch_size  # drop_last
    return list(zip(u[:n], mix[:n]))


def our_pairs(iters, num_lb=2, b=4, num_unlabeled=24, **kwargs):
    """(u index, mix index) of every unlabeled sample of ``iters`` batches of our sampler."""
    dataset = torch.utils.data.ConcatDataset([list(range(5)), list(range(num_unlabeled))])
    sampler = DATA_SAMPLERS.build(dict(type='MultiSourceSampler', dataset=dataset,
                                       batch_size=num_lb + 2 * b, source_ratio=[num_lb, 2 * b],
                                       seed=0, **kwargs))
    stream = iter(sampler)
    pairs = []
    for _ in range(iters):
        batch = [next(stream) for _ in range(num_lb + 2 * b)]
        unlabeled = [i - 5 for i in batch[num_lb:]]
        pairs += list(zip(unlabeled[:b], unlabeled[b:]))
    return pairs


def test_the_authors_mix_image_is_the_u_image():
    """The reference itself: both reads of one sampler give the same order."""
    pairs = authors_pairs(24, 4)
    assert all(u == mix for u, mix in pairs)
    assert sorted(u for u, _ in pairs) == list(range(24))


def test_mix_half_names_the_u_half_images():
    pairs = our_pairs(12, source_repeats=[1, 2])  # two passes over 24 images, 4 per batch
    assert all(u == mix for u, mix in pairs)
    for k in range(2):  # the u half reads every image once per pass, as the authors' loader
        assert sorted(u for u, _ in pairs[24 * k:24 * (k + 1)]) == list(range(24))


def test_negative_control_distinct_images_without_repeats():
    pairs = our_pairs(3)  # one pass: 12 u + 12 mix samples, all distinct
    assert not any(u == mix for u, mix in pairs)
    assert sorted(i for pair in pairs for i in pair) == list(range(24))


@pytest.mark.parametrize('repeats, match', [([1], 'one entry'), ([1, 0], 'one entry'),
                                            ([1, 3], 'not divisible')])
def test_bad_source_repeats_are_refused(repeats, match):
    with pytest.raises(ValueError, match=match):
        our_pairs(1, source_repeats=repeats)


# --- end to end: the UniMatch config's loader and preprocessor on generated images ----------
def generated_camvid(root, num=8):
    rng = np.random.default_rng(0)
    stems = [f'frame{i}' for i in range(num)]
    for sub in ('images', 'labels'):
        os.makedirs(osp.join(root, 'camvid', sub, 'train'))
    for stem in stems:
        cv2.imwrite(osp.join(root, 'camvid', 'images', 'train', stem + '.jpg'),
                    rng.integers(0, 256, (180, 240, 3), dtype=np.uint8))
        cv2.imwrite(osp.join(root, 'camvid', 'labels', 'train', stem + '.png'),
                    rng.integers(0, 11, (180, 240), dtype=np.uint8))
    with open(osp.join(root, 'labeled.txt'), 'w') as f:
        f.write('\n'.join(stems[:2]) + '\n')
    with open(osp.join(root, 'unlabeled.txt'), 'w') as f:
        f.write('\n'.join(stems[2:]) + '\n')


def unlabeled_batch(root, **sampler):
    """The UniMatch CamVid config's first batch (2 labeled + 2 u + 2 mix), preprocessed: the
    weak views and data samples of the 4 unlabeled samples."""
    cfg = Config.fromfile(CONFIG)
    loader = cfg.train_dataloader
    loader.update(batch_size=6, num_workers=0, persistent_workers=False)
    loader.sampler.update(batch_size=6, source_ratio=[2, 4], **sampler)
    for part in ('labeled', 'unlabeled'):
        loader.dataset[part].update(data_root=str(root), ann_file=osp.join(root, part + '.txt'))
    batch = next(iter(Runner.build_dataloader(loader, seed=0)))
    pre = MODELS.build(cfg.model.data_preprocessor)
    out = pre(batch, training=True)
    return out['inputs']['unsup_weak'], out['data_samples']['unsup_weak']


def test_config_gives_the_u_images_again_with_other_crops(tmp_path):
    generated_camvid(tmp_path)
    images, samples = unlabeled_batch(tmp_path)
    paths = [s.img_path for s in samples]
    assert paths[:2] == paths[2:] and paths[0] != paths[1]
    for i in range(2):  # each occurrence has its own rescale / crop / flip
        assert not torch.equal(images[i], images[2 + i])
    UniMatch.check_mix_shows_u(samples)  # the segmentor accepts the batch


def test_negative_control_config_without_repeats_is_refused(tmp_path):
    generated_camvid(tmp_path)
    _, samples = unlabeled_batch(tmp_path, source_repeats=None)
    paths = [s.img_path for s in samples]
    assert not set(paths[:2]) & set(paths[2:])
    with pytest.raises(ValueError, match=r'source_repeats=\[1, 2\]'):
        UniMatch.check_mix_shows_u(samples)
