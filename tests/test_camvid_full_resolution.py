"""The CamVid benchmark at full resolution (benchmarks/camvid/resolution.py,
full_resolution.py, report_full_resolution.py)."""
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from conftest import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks', 'camvid'))
import full_resolution  # noqa: E402
import plan  # noqa: E402
import report_full_resolution as report  # noqa: E402
import training  # noqa: E402
from resolution import full_resolution as rescale  # noqa: E402
from resolution import write_full_resolution  # noqa: E402


def test_full_resolution_doubles_the_resize_and_the_crop_and_nothing_else():
    cfg = dict(
        crop_size=(160, 160),
        model=dict(data_preprocessor=dict(size=(160, 160), pad_val=0),
                   decode_head=dict(loss=dict(type='ProbOhem', min_kept=16000, thresh=0.7))),
        pipeline=[dict(type='Resize', scale=(240, 180), keep_ratio=True),
                  dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
                  dict(type='RandomCrop', crop_size=[160, 160], cat_max_ratio=1.0),
                  dict(type='Resize', scale=(2048, 512))])
    out, counts = rescale(cfg)
    assert out['crop_size'] == (320, 320)
    assert out['model']['data_preprocessor'] == dict(size=(320, 320), pad_val=0)
    assert out['model']['decode_head']['loss'] == dict(type='ProbOhem', min_kept=64000,
                                                       thresh=0.7)
    assert out['pipeline'] == [
        dict(type='Resize', scale=(480, 360), keep_ratio=True),
        dict(type='RandomRescale', ratio_range=(0.5, 2.0)),
        dict(type='RandomCrop', crop_size=(320, 320), cat_max_ratio=1.0),
        dict(type='Resize', scale=(2048, 512))]   # not the benchmark's size: left as it is
    assert counts == dict(scale=1, crop_size=2, size=1, min_kept=1)
    assert cfg['crop_size'] == (160, 160)   # the input is not changed


def test_a_config_without_the_half_resolution_is_refused():
    with pytest.raises(ValueError, match='no scale'):
        rescale(dict(pipeline=[dict(type='Resize', scale=(512, 512)),
                               dict(type='RandomCrop', crop_size=(160, 160))]))


def test_the_conformalsam_config_at_full_resolution_trains_320_px_crops(tmp_path):
    from conformalsam_mmseg.datasets.annotator_pipeline import annotated_pipeline
    out = tmp_path / 'conformalsam_camvid.py'
    write_full_resolution(osp.join(REPO, 'configs', 'conformalsam_camvid.py'), str(out))
    cfg = Config.fromfile(str(out))
    text = out.read_text()
    assert '160' not in text and '240' not in text
    ds = cfg.train_dataloader.dataset
    for part in (ds.labeled, ds.unlabeled):
        steps = {s['type']: s for s in part.pipeline}
        assert tuple(steps['Resize']['scale']) == (480, 360)
        assert tuple(steps['RandomCrop']['crop_size']) == (320, 320)
    assert tuple(cfg.model.host.data_preprocessor.data_preprocessor.size) == (320, 320)
    val = {s['type']: s for s in cfg.val_dataloader.dataset.pipeline}
    assert tuple(val['Resize']['scale']) == (480, 360)
    # the annotator's padding follows the crop
    pipe = annotated_pipeline(ds.unlabeled.pipeline, 'cache', ('a', 'b'))
    pad = [s for s in pipe if s['type'] == 'PadSegFields']
    assert len(pad) == 1 and tuple(pad[0]['size']) == (320, 320)
    # everything but the sizes is the half-resolution config's
    half = Config.fromfile(osp.join(REPO, 'configs', 'conformalsam_camvid.py'))
    assert cfg.model.pseudo_label_head == half.model.pseudo_label_head
    assert cfg.optim_wrapper == half.optim_wrapper
    assert cfg.train_dataloader.batch_size == half.train_dataloader.batch_size


def test_the_runs_read_the_rewritten_configs_with_the_workers_asked_for(monkeypatch):
    seen = {}
    monkeypatch.setattr(training, 'run', lambda config, opts, *a, **k: seen.update(
        config=config, opts=opts))
    protocol = dict(iters=100, lr=0.01, labeled_batch=4, log_interval=50, workers=10,
                    config_dir='/somewhere/configs')
    training.run_row(plan.ROW['supervised'], '1-8', 0, protocol, '/w')
    assert seen['config'] == '/somewhere/configs/' + plan.ROW['supervised'].config
    assert seen['opts']['train_dataloader.num_workers'] == 10
    training.run_row(plan.ROW['supervised'], '1-8', 0, dict(protocol, config_dir=None,
                                                            workers=None), '/w')
    assert seen['config'] == osp.join(training.CONFIGS, plan.ROW['supervised'].config)
    assert 'train_dataloader.num_workers' not in seen['opts']


def test_the_filter_device_reaches_every_annotator_row(monkeypatch):
    seen = []
    monkeypatch.setattr(full_resolution, 'train', lambda protocol, runs, work_root: seen.append(
        [training.row_options(plan.ROW[r.row], r.split, r.seed, protocol, r.group)
         for r in runs]) or [])
    for name in ('check_camvid', 'make_splits', 'make_selection', 'make_annotators'):
        monkeypatch.setattr(full_resolution.inputs, name, lambda *a, **k: None)
    monkeypatch.setattr(full_resolution, 'write_configs', lambda *a: None)
    monkeypatch.setattr(full_resolution, 'keep_annotator_manifest', lambda *a: None)
    monkeypatch.setattr(full_resolution.report_full_resolution, 'write', lambda *a: 'report')
    monkeypatch.setattr(full_resolution.training, 'dump_json', lambda *a: None)
    key = 'model.pseudo_label_head.filter_device'
    args = ['--iters', '100', '--rows', 'supervised', 'raw', 'conformalsam', '--work-dir',
            '/nonexistent/w', '--out', '/nonexistent/o']
    for flag, expected in (([], None), (['--filter-device', 'cpu'], 'cpu')):
        seen.clear()
        full_resolution.main(args + flag)
        supervised, raw, conformalsam = seen[0]
        assert key not in supervised
        assert raw[key] == conformalsam[key] == expected and key in raw and key in conformalsam
    # as tools/train.py gets None: the text 'None', which --cfg-options reads as None
    from mmengine.config import DictAction
    assert DictAction._parse_iterable(training._format(None)) is None
    # the half-resolution benchmark's protocol has no filter_device: its runs' options (which
    # decide whether a finished run is read or trained again) are unchanged
    protocol = dict(iters=100, lr=0.01, labeled_batch=4, log_interval=50,
                    annotators=dict(plan.ANNOTATORS))
    assert key not in training.row_options(plan.ROW['raw'], '1-8', 0, protocol, 'strong')


def test_rows_with_a_chosen_option_are_not_offered():
    assert 'supervised' in full_resolution.ROWS and 'conformalsam' in full_resolution.ROWS
    assert not {'threshold_best', 'risk', 'conformal_pixel_filtering'} & set(full_resolution.ROWS)
    runs = full_resolution.runs_of(['supervised', 'raw'], [0, 1])
    assert [(r.row, r.seed, r.group) for r in runs] == [
        ('supervised', 0, None), ('raw', 0, 'strong'), ('supervised', 1, None),
        ('raw', 1, 'strong')]


LOG = """$ OMP_NUM_THREADS=16 python tools/train.py conformalsam_camvid.py
    CUDA available: True
    GPU 0: NVIDIA H200
    PyTorch: 2.11.0+cu130
    PyTorch compiling details: PyTorch built with:
a huge config dump
INFO - Iter(train) [  50/1750]  time: 0.9000  data_time: 0.5000  conformalsam_stage: 1
INFO - Iter(train) [ 100/1750]  time: 0.2000  data_time: 0.0200  conformalsam_stage: 1
INFO - Iter(train) [ 150/1750]  time: 0.3000  data_time: 0.0400  conformalsam_stage: 1
"""


def test_unfinished_runs_keep_their_log_and_report_how_far_they_came(tmp_path):
    wd = tmp_path / 'run'
    wd.mkdir()
    (wd / 'train.log').write_text(LOG)
    kept = tmp_path / 'kept'
    training.keep_logs(str(wd), str(kept))
    text = (kept / 'train.log').read_text()
    assert 'GPU 0: NVIDIA H200' in text and 'PyTorch: 2.11.0+cu130' in text
    assert 'huge config dump' not in text and not (kept / 'result.json').exists()
    assert report.machine(str(kept / 'train.log')) == 'NVIDIA H200, PyTorch 2.11.0+cu130'
    last, total, speeds = report.training_speed(str(kept / 'train.log'))
    assert (last, total) == (150, 1750)
    assert speeds['Stage 1'] == pytest.approx((0.25, 0.03))   # the first window left out


def _result(row, seed, val, group=None):
    return dict(row=row, split='1-8', seed=seed, group=group, mIoU=40.0, val={'1750': val},
                wall_seconds=150.0, seconds_per_iter=dict(all=0.056))


def test_the_report_sets_each_run_beside_its_half_resolution_run(tmp_path):
    out = tmp_path / 'results'
    half = out / 'logs' / 'camvid' / '1-8' / 'seed0' / 'strong' / 'raw'
    half.mkdir(parents=True)
    (half / 'result.json').write_text(json.dumps(_result('raw', 0, 45.6, 'strong')))
    full = out / 'logs' / 'camvid_full_resolution' / '1-8' / 'seed0'
    (full / 'supervised').mkdir(parents=True)
    (full / 'supervised' / 'train.log').write_text('    PyTorch: 2.13.0+cpu\n')
    (full / 'strong' / 'conformalsam').mkdir(parents=True)
    (full / 'strong' / 'conformalsam' / 'train.log').write_text(LOG)
    (out / 'logs' / 'camvid_full_resolution' / 'annotator_cache_info.json').write_text(
        json.dumps(dict(model=dict(checkpoint_sha1='b5e67a710cb3ba2e'),
                        evaluation=dict(mIoU=0.39354))))
    summary = dict(protocol=dict(iters=1750, lr=0.01, workers=10,
                                 annotator_sha1={'strong': 'b5e67a710cb3ba2e'}),
                   split='1-8', group='strong', seeds=[0],
                   rows=['supervised', 'raw', 'conformalsam', 'conformal_pixel'],
                   resolution='480 x 360 images, 320 px crops')
    unfinished = [dict(run='conformalsam, seed 0', row='conformalsam', seed=0,
                       log='logs/camvid_full_resolution/1-8/seed0/strong/conformalsam/'
                           'train.log')]
    on_cpu = dict(_result('conformal_pixel', 0, 57.0, 'strong'),
                  options={report.FILTER_DEVICE_OPTION: 'cpu'})
    path = report.write(summary, [_result('supervised', 0, 60.3),
                                  _result('raw', 0, 58.1, 'strong'), on_cpu], unfinished, str(out))
    text = open(path).read()
    assert ('| Supervised only (labeled images) | 0 | CPU, PyTorch 2.13.0+cpu | 60.3 | - | 40.0 '
            '| - | - |') in text
    assert ('| + raw annotator labels | 0 | ? | 58.1 | -2.2 | 40.0 | 45.6 | GPU | 0.056 | 2.5 |'
            in text)
    assert '| 0 | ? | 57.0 | -3.3 | 40.0 | - | CPU | 0.056 | 2.5 |' in text
    assert ('conformalsam, seed 0 (NVIDIA H200, PyTorch 2.11.0+cu130): iteration 150 of 1750; '
            'Stage 1 0.250 s/it (0.030 of it loading data)') in text
    assert 'Not started' not in text
    assert '--rows supervised raw conformalsam conformal_pixel`' in text
    summary['protocol']['filter_device'] = 'cpu'
    text = open(report.write(summary, [], [], str(out))).read()
    assert '--rows supervised raw conformalsam conformal_pixel --filter-device cpu`' in text
    assert ('The cache these runs read (logs/camvid_full_resolution/annotator_cache_info.json): '
            'weights sha1 b5e67a710cb3, mIoU 39.35 on CamVid train.') in text
    # the kept weights are others now: the manifest describes the earlier runs' cache, and a
    # half-resolution run made from other weights is no comparison
    summary['protocol']['annotator_sha1'] = {'strong': 'c0ffee'}
    raw = dict(_result('raw', 0, 58.1, 'strong'), annotator='c0ffee')
    text = open(report.write(summary, [raw], [], str(out))).read()
    assert 'The cache the runs "made from an earlier annotator" (below) read' in text
    assert '| + raw annotator labels | 0 | ? | 58.1 | - | 40.0 | - |' in text


def test_the_report_reads_the_kept_runs_when_their_work_dirs_are_gone(tmp_path):
    out, work = tmp_path / 'results', tmp_path / 'work'
    kept = out / 'logs' / 'camvid_full_resolution' / '1-8' / 'seed0'
    (kept / 'supervised').mkdir(parents=True)
    (kept / 'supervised' / 'result.json').write_text(json.dumps(_result('supervised', 0, 60.3)))
    (kept / 'strong' / 'conformalsam').mkdir(parents=True)
    (kept / 'strong' / 'conformalsam' / 'train.log').write_text(LOG)
    (kept / 'strong' / 'raw').mkdir(parents=True)   # made from other annotator weights
    (kept / 'strong' / 'raw' / 'result.json').write_text(json.dumps(
        dict(_result('raw', 0, 52.7, 'strong'), annotator='other weights')))
    full_resolution.main(['--report-only', '--iters', '1750', '--work-dir', str(work),
                          '--out', str(out), '--rows', 'supervised', 'conformalsam', 'raw'])
    results = json.loads((work / 'results.json').read_text())
    assert [r['row'] for r in results['training']] == ['supervised']
    assert [u['row'] for u in results['unfinished']] == ['conformalsam']
    assert [u['row'] for u in results['stale']] == ['raw']
    text = (out / 'camvid_full_resolution.md').read_text()
    assert 'iteration 150 of 1750' in text
    stale = text[text.index('## Made from an earlier annotator'):]
    assert '| + raw annotator labels | 0 | ? | 52.7 | -7.6 | 40.0 | - |' in stale
    assert '| + raw annotator labels' not in text[:text.index('## Made from')]
    assert 'Not started' not in text
    # what was kept is left as it was
    assert (kept / 'strong' / 'conformalsam' / 'train.log').read_text() == LOG
