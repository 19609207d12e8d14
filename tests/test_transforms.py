import cv2
import numpy as np
import pytest
from mmseg.registry import TRANSFORMS

import conformalsam_mmseg  # noqa: F401


def _write_label(path, values):
    cv2.imwrite(str(path), np.asarray(values, np.uint8))


def test_checked_annotations_accept_valid_labels(tmp_path):
    _write_label(tmp_path / 'ok.png', [[0, 10], [255, 3]])
    load = TRANSFORMS.build(dict(type='LoadCheckedAnnotations', num_classes=11))
    results = load(dict(seg_map_path=str(tmp_path / 'ok.png'), reduce_zero_label=False,
                        seg_fields=[]))
    np.testing.assert_array_equal(results['gt_seg_map'], [[0, 10], [255, 3]])


def test_checked_annotations_name_the_file_and_values(tmp_path):
    path = tmp_path / 'bad.png'
    _write_label(path, [[0, 11], [30, 3]])
    load = TRANSFORMS.build(dict(type='LoadCheckedAnnotations', num_classes=11))
    with pytest.raises(ValueError) as err:
        load(dict(seg_map_path=str(path), reduce_zero_label=False, seg_fields=[]))
    assert str(path) in str(err.value) and '[11, 30]' in str(err.value)
    assert '0..10' in str(err.value)


@pytest.mark.parametrize('seed', range(5))
def test_random_rescale_scales_image_and_label_alike(seed):
    np.random.seed(seed)
    h, w = 60, 80
    label = np.zeros((h, w), np.uint8)
    label[:, w // 2:] = 1
    results = dict(img=np.zeros((h, w, 3), np.uint8), gt_seg_map=label,
                   seg_fields=['gt_seg_map'], img_shape=(h, w), ori_shape=(h, w))
    out = TRANSFORMS.build(dict(type='RandomRescale', ratio_range=(0.5, 2.0)))(results)
    nh, nw = out['img'].shape[:2]
    assert out['gt_seg_map'].shape == (nh, nw)
    ratio = nw / w
    assert 0.5 - 1 / w <= ratio <= 2.0 + 1 / w
    assert abs(nh / h - ratio) <= 1.5 / h  # the aspect ratio is kept
    # Nearest interpolation: still exactly the two label values, split in the middle.
    assert set(np.unique(out['gt_seg_map'])) == {0, 1}
    assert abs(out['gt_seg_map'].mean() - 0.5) < 0.05


def test_random_rescale_rejects_bad_range():
    with pytest.raises(ValueError, match='ratio_range'):
        TRANSFORMS.build(dict(type='RandomRescale', ratio_range=(2.0, 0.5)))
