"""Two gloo processes, each calibrating on half the images, merge to one process's thresholds."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conformalsam_mmseg.conformal import ConformalCalibrator

CONFIGS = [dict(mode='pixel'), dict(mode='class', alpha=[0.05, 0.1, 0.2, 0.1]),
           dict(mode='class', method='exact'), dict(mode='image'),
           dict(mode='image', method='exact', image_aggregation='median')]
IMAGES = 6


def _data():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(IMAGES, 4, 20, 30, generator=generator), 1)
    probs[0, :, 0, 0] = torch.tensor([0.0, 0.0, 1.0, 0.0])   # a score of exactly 1
    labels = torch.randint(0, 4, (IMAGES, 20, 30), generator=generator)
    labels[:, :3] = 255
    labels[0, 0, 0] = 0
    return probs, labels


def _worker(rank, world_size, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    try:
        probs, labels = _data()
        results = []
        for config in CONFIGS:
            calibrator = ConformalCalibrator(4, **config)
            for b in range(rank, IMAGES, world_size):   # this rank's shard of the images
                calibrator.update(probs[b:b + 1], labels[b:b + 1])
            merged = calibrator.all_reduce()
            results.append(dict(thresholds=merged.thresholds(), counts=merged.group_counts(),
                                local_counts=calibrator.group_counts()))
        torch.save(results, f'{out_dir}/rank{rank}.pth')
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / 'pg_init'), str(tmp_path)), nprocs=2, join=True)
    probs, labels = _data()
    for rank in range(2):
        results = torch.load(tmp_path / f'rank{rank}.pth', weights_only=True)
        for config, result in zip(CONFIGS, results):
            single = ConformalCalibrator(4, **config)
            single.update(probs, labels)
            assert torch.equal(result['thresholds'], single.thresholds()), config
            if config['mode'] == 'image':   # per-image counts come back in rank order
                assert sorted(result['counts'].tolist()) == sorted(
                    single.group_counts().tolist())
            else:
                assert torch.equal(result['counts'], single.group_counts()), config
            assert result['local_counts'].sum() < single.group_counts().sum()
