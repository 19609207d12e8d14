"""The annotator-cache benchmarks (benchmarks/bench_annotator_loading.py, bench_cache_size.py)
run and measure what they say, on tiny settings."""
import os.path as osp
import sys

import numpy as np

from conftest import REPO, shared_data

sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import bench_annotator_loading  # noqa: E402
import bench_cache_size  # noqa: E402


def test_loading_benchmark_on_real_camvid(tmp_path, monkeypatch):
    camvid = shared_data('camvid')
    # as on a fresh clone: no cross-sequence cache, no split folders
    monkeypatch.setattr(bench_annotator_loading, 'LABELED_SPLIT', str(tmp_path / 'absent'))
    result = bench_annotator_loading.main(['--data-root', camvid, '--images', '6', '--rounds',
                                           '1', '--batches', '2', '--source-cache',
                                           str(tmp_path / 'no_cache')])
    assert result['source'].startswith('SimulatedAnnotator')
    rows = {r['variant']: r for r in result['rows']}
    assert list(rows) == ['without cache', 'zlib, top-2', 'zlib, top-3', 'none, top-2',
                          'none, top-3']
    assert rows['without cache']['ratio'] == 1.0
    # an uncompressed entry is its header plus H x W x 2k bytes
    for k in (2, 3):
        kib = rows[f'none, top-{k}']['kib']
        assert 360 * 480 * 2 * k / 1024 < kib < 360 * 480 * 2 * k / 1024 + 1
        assert rows[f'zlib, top-{k}']['kib'] < kib
    batches = [r['variant'] for r in result['batch_rows']]
    assert batches == ['UniMatch+ConformalSAM (4 + 8), without',
                       'UniMatch+ConformalSAM (4 + 8), with',
                       'ConformalSAM (4 + 4), without', 'ConformalSAM (4 + 4), with']


def test_cache_size_benchmark_label_maps_and_sizes():
    rng = np.random.default_rng(0)
    voc = bench_cache_size.label_map(rng, 75, 100, 21, stuff=0, objects=3)
    assert voc.shape == (75, 100) and voc.dtype == np.uint8
    assert (voc == 0).any() and len(np.unique(voc)) >= 2  # background and objects
    ade = bench_cache_size.label_map(rng, 100, 130, 150, stuff=8, objects=10)
    assert ade.max() < 150 and len(np.unique(ade)) >= 5

    probs = bench_cache_size.clean_probs(voc, 21)
    assert probs.shape == (21, 75, 100)
    assert np.allclose(probs.sum(0).numpy(), 1, atol=1e-5)
    # confident inside regions: the argmax is the label away from the (stride-8) borders
    assert (probs.argmax(0).numpy() == voc).mean() > 0.9
    sizes = bench_cache_size.entry_sizes(probs, [f'c{i}' for i in range(21)], 'x')
    for k in (2, 3):
        assert 75 * 100 * 2 * k < sizes[('none', k)] < 75 * 100 * 2 * k + 1024
        assert sizes[('zlib', k)] < sizes[('none', k)] / 4  # smooth maps compress well
