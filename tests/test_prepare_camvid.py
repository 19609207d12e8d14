"""tools/prepare_camvid.py: SegNet CamVid layout -> project layout, its errors, and a round trip
through real CamVid files."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'prepare_camvid.py')
REAL_CAMVID = osp.join(osp.dirname(REPO), 'shared', 'data', 'camvid')
SPLITS = ('train', 'val', 'test')


def load_tool():
    spec = importlib.util.spec_from_file_location('prepare_camvid', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_segnet(src, counts=None, h=12, w=16, seed=0):
    """A tiny SegNet layout; returns {split: {stem: (image, label)}} with labels 0..11."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (counts or {'train': 3, 'val': 2, 'test': 2}).items():
        data[split] = {}
        for i in range(n):
            stem = f'{split}seq_{i:04d}'
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            label = rng.integers(0, 12, (h, w), dtype=np.uint8)
            label[0, 0], label[0, 1] = 11, 10  # void and the last class always present
            write_png(osp.join(src, split, f'{stem}.png'), image)
            write_png(osp.join(src, f'{split}annot', f'{stem}.png'), label)
            data[split][stem] = (image, label)
    return data


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_converts_layout_void_and_jpeg(tmp_path):
    src, dst = tmp_path / 'CamVid', tmp_path / 'camvid'
    data = make_segnet(src)
    counts = tool.prepare_camvid(str(src), str(dst), progress=False)
    assert counts == {'train': 3, 'val': 2, 'test': 2}
    for split in SPLITS:
        assert sorted(os.listdir(dst / 'images' / split)) == \
            sorted(f'{s}.jpg' for s in data[split])
        assert sorted(os.listdir(dst / 'labels' / split)) == \
            sorted(f'{s}.png' for s in data[split])
        for stem, (image, label) in data[split].items():
            out = cv2.imread(str(dst / 'labels' / split / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
            assert out.dtype == np.uint8 and out.shape == label.shape
            np.testing.assert_array_equal(out, np.where(label == 11, 255, label))
            jpg = dst / 'images' / split / f'{stem}.jpg'
            assert jpg.read_bytes()[:2] == b'\xff\xd8'  # a JPEG, not a renamed PNG
            assert cv2.imread(str(jpg)).shape == image.shape


def test_cli_end_to_end_and_rerun(tmp_path):
    src, dst = tmp_path / 'CamVid', tmp_path / 'camvid'
    make_segnet(src)
    for _ in range(2):  # a second run replaces the files in place
        res = run_tool(src, dst, '--no-progress')
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == (f'prepare_camvid: train 3, val 2, test 2 images -> '
                                      f'{dst}/images, {dst}/labels')
    leftovers = [n for _, _, files in os.walk(dst) for n in files if '.tmp-' in n]
    assert leftovers == []
    res = run_tool(src, tmp_path / 'only_val', '--splits', 'val', '--no-progress')
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path / 'only_val' / 'images')) == ['val']


def test_progress_bar_goes_to_stderr(tmp_path):
    src = tmp_path / 'CamVid'
    make_segnet(src, {'train': 2})
    res = run_tool(src, tmp_path / 'out', '--splits', 'train')
    assert res.returncode == 0, res.stderr
    assert 'camvid train' in res.stderr and '2/2' in res.stderr


def expect_error(src, dst, *fragments):
    with pytest.raises(tool.CamVidError) as err:
        tool.prepare_camvid(str(src), str(dst), progress=False)
    for fragment in fragments:
        assert fragment in str(err.value)
    res = run_tool(src, dst, '--no-progress')
    assert res.returncode == 1
    assert res.stderr.startswith('prepare_camvid.py: error:')
    assert 'Traceback' not in res.stderr
    for fragment in fragments:
        assert fragment in res.stderr


def test_missing_source_or_folder(tmp_path):
    expect_error(tmp_path / 'nothing', tmp_path / 'out', 'source folder not found')
    src = tmp_path / 'CamVid'
    make_segnet(src)
    for n in os.listdir(src / 'valannot'):
        os.remove(src / 'valannot' / n)
    os.rmdir(src / 'valannot')
    expect_error(src, tmp_path / 'out', f'missing folder {src}/valannot', 'trainannot/')
    assert not (tmp_path / 'out').exists()  # every split is checked before writing


def test_image_without_label_and_label_without_image(tmp_path):
    src = tmp_path / 'CamVid'
    make_segnet(src)
    os.remove(src / 'testannot' / 'testseq_0001.png')
    expect_error(src, tmp_path / 'out', f'1 image(s) in {src}/test without a label in '
                 f'{src}/testannot: testseq_0001.png')
    os.remove(src / 'test' / 'testseq_0001.png')
    os.remove(src / 'train' / 'trainseq_0002.png')
    expect_error(src, tmp_path / 'out', f'1 label(s) in {src}/trainannot without an image in '
                 f'{src}/train: trainseq_0002.png')
    assert not (tmp_path / 'out').exists()


def test_label_value_above_void(tmp_path):
    src = tmp_path / 'CamVid'
    make_segnet(src)
    bad = src / 'valannot' / 'valseq_0001.png'
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[3, 3], label[4, 4] = 12, 200
    write_png(bad, label)
    expect_error(src, tmp_path / 'out', f'label {bad} has value(s) [12, 200] above 11')


def test_size_mismatch(tmp_path):
    src = tmp_path / 'CamVid'
    make_segnet(src)
    bad = src / 'trainannot' / 'trainseq_0000.png'
    write_png(bad, np.zeros((10, 16), np.uint8))
    expect_error(src, tmp_path / 'out', f'label {bad} is 16x10 but image '
                 f'{src}/train/trainseq_0000.png is 16x12')


def test_colour_label_and_unreadable_image(tmp_path):
    src = tmp_path / 'CamVid'
    make_segnet(src)
    bad = src / 'testannot' / 'testseq_0000.png'
    write_png(bad, np.zeros((12, 16, 3), np.uint8))
    expect_error(src, tmp_path / 'out', f'label {bad} has shape (12, 16, 3)', 'single-channel')
    write_png(bad, np.zeros((12, 16), np.uint8))
    (src / 'val' / 'valseq_0000.png').write_bytes(b'not a png')
    expect_error(src, tmp_path / 'out', f'cannot read image {src}/val/valseq_0000.png')


def test_round_trip_from_real_camvid(tmp_path):
    """Real CamVid -> SegNet layout (255 back to 11, PNG images) -> the tool -> the originals."""
    if not osp.isdir(REAL_CAMVID):
        pytest.skip(f'real CamVid {REAL_CAMVID} is absent (it lives beside the repository, in '
                    '../shared/data, and is never committed)')
    src, dst = tmp_path / 'SegNet', tmp_path / 'camvid'
    originals = {}
    for split in SPLITS:
        stems = sorted(n[:-4] for n in os.listdir(osp.join(REAL_CAMVID, 'labels', split)))
        for stem in stems[:2] + stems[-1:]:  # different sequences at both ends
            image = cv2.imread(osp.join(REAL_CAMVID, 'images', split, f'{stem}.jpg'))
            label = cv2.imread(osp.join(REAL_CAMVID, 'labels', split, f'{stem}.png'),
                               cv2.IMREAD_UNCHANGED)
            assert label.ndim == 2 and set(np.unique(label)) <= set(range(11)) | {255}
            write_png(osp.join(src, split, f'{stem}.png'), image)
            write_png(osp.join(src, f'{split}annot', f'{stem}.png'),
                      np.where(label == 255, 11, label).astype(np.uint8))
            originals[split, stem] = image, label
    res = run_tool(src, dst, '--no-progress')
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('prepare_camvid: train 3, val 3, test 3 images')
    for (split, stem), (image, label) in originals.items():
        out_label = cv2.imread(str(dst / 'labels' / split / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(out_label, label)
        out_image = cv2.imread(str(dst / 'images' / split / f'{stem}.jpg'))
        assert out_image.shape == image.shape == (360, 480, 3)
        # re-encoding an already-q95 JPEG at q95 changes pixels only slightly
        assert np.abs(out_image.astype(int) - image.astype(int)).mean() < 2.0
