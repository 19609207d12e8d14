import itertools
import math

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from mmseg.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


@DATA_SAMPLERS.register_module()
class MultiSourceSampler(Sampler):
    """Batches with a fixed number of samples from each source of a ``ConcatDataset``.

    MMDetection 3.x's ``MultiSourceSampler`` for semi-supervised segmentation: over
    ``ConcatDataset([labeled, unlabeled])`` with ``source_ratio=[8, 16]`` every batch holds
    exactly 8 labeled then 16 unlabeled samples (UniMatch's segmentor splits the unlabeled
    part into the batch u and the CutMix source batch). The stream is infinite: use it with
    ``IterBasedTrainLoop``.

    Order. Each source s runs through passes k = 0, 1, ...; pass k is a permutation of the
    source drawn from ``(seed, epoch, s, k)``, cyclically padded to a multiple of the world
    size (as ``DistributedSampler``), and rank r takes every world_size-th entry from r on.
    So the ranks of one pass hold disjoint shards (up to the padding), no image repeats within
    a rank's pass, and a source that is exhausted starts its next pass on its own: the short
    labeled list cycles while the unlabeled one is read once, as UniMatch repeats the labeled
    ids. The same seed gives the same stream on every run; ranks must share the seed
    (``seed=None`` draws one and broadcasts it).

    Repeats. ``source_repeats=[1, 2]`` with ``source_ratio=[B, 2B]`` draws B unlabeled images
    per batch and yields them twice in the same order: unlabeled samples i and B + i name the
    same image, and the pipeline loads and augments each occurrence on its own (its own random
    rescale, crop, flip and colours). This is UniMatch's CutMix source batch, which the authors
    read from a second pass of the unlabeled loader in the same sampler order. Without it
    (``None``, every repeat 1) all 2B unlabeled samples are distinct images of the pass.

    The dataloader groups consecutive indices, so its ``batch_size`` must be this sampler's
    ``batch_size`` = ``sum(source_ratio)``; set both from one variable in the config::

        train_dataloader = dict(
            batch_size=6,
            sampler=dict(type='MultiSourceSampler', batch_size=6, source_ratio=[2, 4]),
            dataset=dict(type='ConcatDataset', datasets=[labeled, unlabeled]))

    Args:
        dataset (ConcatDataset): one sub-dataset per source, in the order of source_ratio.
        batch_size (int): samples per batch (and per rank).
        source_ratio (list[int]): samples per batch from each source.
        source_repeats (list[int], optional): per source, how many times each drawn index is
            yielded: source s gives source_ratio[s] / source_repeats[s] distinct indices, then
            the same block again, source_repeats[s] blocks in all. Default None: all 1.
        shuffle (bool): permute each pass (else pass k is 0..n-1). Default True.
        seed (int, optional): the runner passes its seed; None draws a shared random one.
        rank, world_size (int, optional): default from ``get_dist_info()``.
    """

    def __init__(self, dataset, batch_size, source_ratio, shuffle=True, seed=None,
                 rank=None, world_size=None, source_repeats=None):
        if not hasattr(dataset, 'datasets'):
            raise TypeError('MultiSourceSampler needs a ConcatDataset of one dataset per source '
                            f"(dict(type='ConcatDataset', datasets=[...])), got {type(dataset)}")
        sizes = [len(d) for d in dataset.datasets]
        source_ratio = [int(n) for n in source_ratio]
        if len(source_ratio) != len(sizes):
            raise ValueError(f'MultiSourceSampler: source_ratio={source_ratio} has '
                             f'{len(source_ratio)} entries for {len(sizes)} datasets')
        if any(n < 1 for n in source_ratio):
            raise ValueError(f'MultiSourceSampler: every source_ratio entry must be >= 1 '
                             f'(samples per batch), got {source_ratio}')
        if batch_size != sum(source_ratio):
            raise ValueError(
                f'MultiSourceSampler: the batch size {batch_size} must equal '
                f'sum(source_ratio) = {sum(source_ratio)} (source_ratio={source_ratio}); set '
                "train_dataloader.batch_size and the sampler's batch_size to "
                f'{sum(source_ratio)}.')
        self.source_repeats = self._check_repeats(source_repeats, source_ratio)
        empty = [i for i, n in enumerate(sizes) if n == 0]
        if empty:
            raise ValueError(f'MultiSourceSampler: source(s) {empty} of the ConcatDataset are '
                             'empty; check their ann_file')
        dist_rank, dist_world_size = get_dist_info()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'MultiSourceSampler: rank {self.rank} is outside '
                             f'[0, world_size={self.world_size})')
        self.dataset = dataset
        self.sizes = sizes
        self.offsets = [0] + list(itertools.accumulate(sizes))[:-1]
        self.batch_size = batch_size
        self.source_ratio = source_ratio
        self.shuffle = shuffle
        # Every rank must permute alike for the shards to be disjoint: share one seed.
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

    @staticmethod
    def _check_repeats(source_repeats, source_ratio):
        if source_repeats is None:
            return [1] * len(source_ratio)
        repeats = [int(r) for r in source_repeats]
        if len(repeats) != len(source_ratio) or any(r < 1 for r in repeats):
            raise ValueError(
                f'MultiSourceSampler: source_repeats={list(source_repeats)} needs one entry '
                f'>= 1 per source ({len(source_ratio)} sources); e.g. [1, 2] for UniMatch.')
        bad = [s for s, (n, r) in enumerate(zip(source_ratio, repeats)) if n % r]
        if bad:
            raise ValueError(
                f'MultiSourceSampler: source_ratio={source_ratio} is not divisible by '
                f'source_repeats={repeats} at source(s) {bad}: each source\'s samples per batch '
                'are its distinct images times its repeats, e.g. source_ratio=[B, 2 * B] with '
                'source_repeats=[1, 2].')
        return repeats

    def shard(self, source, k, epoch=None):
        """Local indices (within ``source``) that this rank reads in pass ``k``."""
        n = self.sizes[source]
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            rng = np.random.default_rng([self.seed % 2**63, epoch, source, k])
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        # Pad by cycling so every rank gets the same count, as DistributedSampler does.
        order = np.resize(order, math.ceil(n / self.world_size) * self.world_size)
        return order[self.rank::self.world_size].tolist()

    def _source_stream(self, source, epoch):
        for k in itertools.count():
            yield from self.shard(source, k, epoch)

    def __iter__(self):
        epoch = self.epoch  # fixed for this stream, whenever set_epoch is called later
        streams = [self._source_stream(s, epoch) for s in range(len(self.sizes))]
        while True:
            for stream, offset, count, repeats in zip(streams, self.offsets, self.source_ratio,
                                                       self.source_repeats):
                block = [offset + next(stream) for _ in range(count // repeats)]
                for _ in range(repeats):
                    yield from block

    def __len__(self):
        return sum(self.sizes)

    def set_epoch(self, epoch):
        """Start the next ``__iter__`` from a stream drawn for ``epoch``.

        An infinite stream is iterated once per run under ``IterBasedTrainLoop`` (mmengine's
        ``DistSamplerSeedHook`` sets epoch 0 before the first batch); a dataloader that is
        re-iterated after ``set_epoch`` gets fresh permutations instead of a replay.
        """
        self.epoch = int(epoch)
