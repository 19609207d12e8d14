"""tools/visualize_pseudo_labels.py: four-panel PNG grids, rejected pixels visible.

A simulated-annotator cache of the generated shapes data (tools/generate_pseudo_labels.py), the
demo config with --cfg-options for its data_root.
"""
import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO

TOOLS = osp.join(REPO, 'tools')
CONFIG = osp.join(REPO, 'configs', 'demo', 'deeplabv3plus_r18-tiny_shapes.py')
TITLE_H = 22  # the tool's title row


def _load(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(TOOLS, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return _load('visualize_pseudo_labels')


@pytest.fixture(scope='module')
def cache(shapes_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('vis') / 'cache')
    _load('generate_pseudo_labels').main([
        CONFIG, '--annotator', 'simulated', '--annotator-cfg', 'gap=0.5', 'seed=0',
        '--split', 'train', '--out', out, '--topk', '3', '--cfg-options',
        f'train_dataloader.dataset.data_root={shapes_root}'])
    return out


def _argv(shapes_root, cache, out, *extra, num=3):
    return [CONFIG, '--cache', cache, '--num', str(num), '--out', str(out), *extra,
            '--cfg-options', f'train_dataloader.dataset.data_root={shapes_root}']


def _calibrated_panel(path, width, height, gap):
    img = cv2.imread(path)[..., ::-1]  # RGB
    left = 2 * (width + gap)
    return img[TITLE_H:TITLE_H + height, left:left + width]


def _has(panel, rgb):
    return bool((panel == np.array(rgb, np.uint8)).all(-1).any())


def test_grids_show_rejected_pixels_when_q_is_small(tool, shapes_root, cache, tmp_path):
    q_file = tmp_path / 'q.json'
    q_file.write_text(json.dumps([0.05] * 4))  # keep only pixels with p >= 0.95
    result = tool.main(_argv(shapes_root, cache, tmp_path / 'small', '--thresholds',
                             str(q_file), '--scale', '2'))
    assert len(result['paths']) == 3 and result['background_index'] == 0  # 'background'
    for path in result['paths']:
        img = cv2.imread(path)
        assert img.shape[1] == 4 * 80 * 2 + 3 * tool.PANEL_GAP  # four 80-px panels, scale 2
        panel = _calibrated_panel(path, 160, 128, tool.PANEL_GAP)
        assert _has(panel, tool.REJECTED_COLOUR) and _has(panel, tool.HATCH_COLOUR)

    # q = 1: every class is in every set, nothing is rejected
    q_file.write_text(json.dumps(1.0))
    result = tool.main(_argv(shapes_root, cache, tmp_path / 'all', '--thresholds', str(q_file),
                             '--scale', '2', num=2))
    for path in result['paths']:
        assert not _has(_calibrated_panel(path, 160, 128, tool.PANEL_GAP),
                        tool.REJECTED_COLOUR)


def test_calibrates_on_the_fly_with_alpha(tool, shapes_root, cache, tmp_path):
    result = tool.main(_argv(shapes_root, cache, tmp_path / 'alpha', '--alpha', '0.1',
                             '--calib-split', 'labeled', num=2))
    q = result['thresholds']
    assert q.shape == (4, ) and bool((q == q[0]).all()) and 0 < float(q[0]) < 1
    assert len(result['paths']) == 2
    for path in result['paths']:
        # by default, 80-px images are enlarged x3
        assert cv2.imread(path).shape[1] == 4 * 80 * 3 + 3 * tool.PANEL_GAP


def test_thresholds_from_calibration_files(tool, tmp_path):
    from conformalsam_mmseg.conformal import ConformalCalibrator, calibration_report
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(2, 3, 8, 8, generator=g).softmax(1)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    for mode in ('pixel', 'class'):
        cal = ConformalCalibrator(3, alpha=0.2, mode=mode)
        cal.update(probs, labels)
        saved = tmp_path / f'{mode}.json'
        cal.save_json(str(saved))
        assert torch.equal(tool.thresholds_from_json(str(saved), 3), cal.thresholds())
        # ConformalCalibrationHook's calibration_report.json
        report = tmp_path / f'{mode}_report.json'
        report.write_text(json.dumps(calibration_report(cal, class_names=['a', 'b', 'c'])
                                     .to_dict()))
        assert torch.allclose(tool.thresholds_from_json(str(report), 3, ['a', 'b', 'c']),
                              cal.thresholds())
