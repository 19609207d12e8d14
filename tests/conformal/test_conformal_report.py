"""The report: per-group n and q, per-class kept ratio and precision, +inf explained."""
import json

import pytest
import torch

from conformalsam_mmseg.conformal import (ConformalCalibrator, FilterStats,
                                          calibration_report)


def test_filter_stats_by_hand():
    stats = FilterStats(3)
    argmax = torch.tensor([[0, 0, 1, 1, 2, 2]])
    pseudo = torch.tensor([[0, 255, 1, 2, 255, 2]])
    truth = torch.tensor([[0, 0, 2, 2, 255, 1]])
    stats.update(pseudo, argmax, truth)
    assert stats.annotator.tolist() == [2, 2, 2]
    assert stats.kept.tolist() == [1, 2, 1]       # argmax class of the non-rejected pixels
    assert stats.assigned.tolist() == [1, 1, 2]
    assert stats.assigned_labeled.tolist() == [1, 1, 2]
    assert stats.correct.tolist() == [1, 0, 1]
    report = calibration_report(_calibrated(), stats, class_names=['bg', 'cat', 'dog'])
    rows = {c['name']: c for c in report.to_dict()['classes']}
    assert rows['bg']['kept_ratio'] == 0.5 and rows['cat']['kept_ratio'] == 1.0
    assert rows['cat']['precision'] == 0.0 and rows['dog']['precision'] == 0.5
    assert report.to_dict()['filtering']['kept_ratio'] == pytest.approx(4 / 6)
    assert report.to_dict()['filtering']['precision'] == pytest.approx(2 / 4)


def _calibrated(mode='class', n=100, alpha=0.05):
    calibrator = ConformalCalibrator(3, alpha=alpha, mode=mode)
    probs = torch.softmax(torch.randn(1, 3, 1, n, generator=torch.Generator().manual_seed(0)),
                          1)
    labels = torch.zeros(1, 1, n, dtype=torch.long)
    labels[0, 0, :10] = 1          # class 1: 10 pixels, too few for alpha 0.05
    calibrator.update(probs, labels)
    return calibrator


def test_report_says_why_q_is_infinite(tmp_path):
    report = calibration_report(_calibrated(), class_names=['bg', 'cat', 'dog'])
    text = str(report)
    assert 'cat' in text and 'inf (too little data: n=10 < 19 needed)' in text
    assert any('q is +inf for dog: n=0' in note for note in report.to_dict()['notes'])
    groups = {g['name']: g for g in report.to_dict()['calibration']['groups']}
    assert groups['bg']['n'] == 90 and groups['bg']['q'] is not None
    assert groups['cat']['q'] is None and groups['cat']['q_infinite']
    report.save_json(tmp_path / 'report.json')
    assert json.loads((tmp_path / 'report.json').read_text()) == report.to_dict()


def test_report_pixel_and_image_modes():
    text = str(calibration_report(_calibrated('pixel')))
    assert 'all pixels' in text and '100' in text and 'inf' not in text
    calibrator = ConformalCalibrator(3, alpha=0.1, mode='image')
    probs = torch.softmax(torch.randn(3, 3, 4, 5), 1)
    labels = torch.randint(0, 3, (3, 4, 5))
    labels[2] = 255
    labels[1, 1:] = 255        # 5 pixels: q_1 = +inf at alpha 0.1
    calibrator.update(probs, labels)
    data = calibration_report(calibrator).to_dict()
    assert data['calibration']['images'] == dict(
        count=3, with_pixels=2, finite_q=1, q_min=data['calibration']['images']['q_min'],
        q_max=data['calibration']['images']['q_min'],
        q_median=data['calibration']['images']['q_min'])
    assert data['calibration']['q'] == pytest.approx(data['calibration']['images']['q_min'])
    assert '1 images have q_i = +inf' in data['notes'][0]
    assert 'aggregated (mean) q' in str(calibration_report(calibrator))


def test_empty_report():
    report = calibration_report(ConformalCalibrator(3))
    assert 'empty calibration set' in str(report)
