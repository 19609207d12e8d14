"""benchmarks/bench_filter_device.py: both places of the head's filter give the same labels."""
import os.path as osp
import sys

import torch

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import bench_filter_device as bench  # noqa: E402


def test_every_filter_is_timed_both_ways_and_the_labels_compared():
    rows = bench.measure(torch.device('cpu'), rounds=1, crops=(24, ))
    assert [r['filter'] for r in rows] == [name for name, _, _ in bench.FILTERS]
    assert all(r['same_labels'] and r['ms_cpu'] > 0 and r['ms_none'] > 0 for r in rows)
    kept = {r['filter']: r['kept_ratio'] for r in rows}
    # q 0.9725 keeps a pixel when its most probable class has p >= 0.0275: every pixel here
    assert kept['conformal pixel q 0.9725'] == 1.0 and kept['raw (confidence 0)'] == 1.0
    assert 0 < kept['risk per-class t'] < 1


def test_a_difference_between_the_two_ways_is_caught(monkeypatch):
    real = bench.head

    def off_by_one(options, thresholds, filter_device, device):
        h = real(options, thresholds, filter_device, device)
        if filter_device is None:
            forward = h.forward
            h.forward = lambda samples: (lambda out: (out[0].clamp(max=9), out[1]))(
                forward(samples))
        return h

    monkeypatch.setattr(bench, 'head', off_by_one)
    rows = bench.measure(torch.device('cpu'), rounds=1, crops=(24, ))
    assert not any(r['same_labels'] for r in rows)
