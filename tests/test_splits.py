"""Split files: reading and checking UniMatch / AllSpark files, writing ann_files, seeded
splits, the make_splits.py CLI, and seeded splits of the real CamVid train set."""
import os
import os.path as osp
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest

from conformalsam_mmseg.datasets.splits import (SplitError, check_disjoint,
                                                convert_split_files, fraction_name,
                                                list_stems, num_labeled, parse_fraction,
                                                read_split_file, read_split_pair, read_stems,
                                                seeded_split, write_ann_files)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MAKE_SPLITS = osp.join(REPO, 'tools', 'make_splits.py')
REAL_CAMVID = osp.join(osp.dirname(REPO), 'shared', 'data', 'camvid')


def pair(stem):
    return f'JPEGImages/{stem}.jpg SegmentationClass/{stem}.png'


def write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{line}\n' for line in lines))
    return str(path)


def make_voc_root(root, stems):
    """A data root with a tiny real JPEG per stem under JPEGImages/."""
    os.makedirs(root / 'JPEGImages', exist_ok=True)
    img = np.full((4, 6, 3), 128, np.uint8)
    for stem in stems:
        cv2.imwrite(str(root / 'JPEGImages' / f'{stem}.jpg'), img)
    return str(root)


def lines_of(path):
    with open(path) as f:
        return f.read().splitlines()


# ----------------------------------------------------------------------------- reading

def test_read_tolerates_blank_lines_trailing_spaces_and_crlf(tmp_path):
    path = tmp_path / 'labeled.txt'
    path.write_bytes(f'{pair("b")}   \r\n\r\n  \n{pair("a")}\t\n\n'.encode())
    entries = read_split_file(str(path))
    assert [e.stem for e in entries] == ['b', 'a']
    assert [e.lineno for e in entries] == [1, 4]
    assert entries[0].image == 'JPEGImages/b.jpg'
    assert entries[0].label == 'SegmentationClass/b.png'


def test_read_checks_images_under_data_root(tmp_path):
    root = make_voc_root(tmp_path / 'VOC2012', ['a', 'b'])
    path = write(tmp_path / 'l.txt', [pair('a'), pair('b')])
    assert [e.stem for e in read_split_file(path, data_root=root)] == ['a', 'b']


@pytest.mark.parametrize('line, reason', [
    ('JPEGImages/a.jpg', 'got 1 field(s)'),
    ('JPEGImages/a.jpg SegmentationClass/a.png extra', 'got 3 field(s)'),
    ('JPEGImages/a.jpg SegmentationClass/b.png', "image and label names differ ('a' vs 'b')"),
])
def test_malformed_line_names_file_line_and_reason(tmp_path, line, reason):
    path = write(tmp_path / 'labeled.txt', [pair('x'), '', line])
    with pytest.raises(SplitError) as err:
        read_split_file(path)
    msg = str(err.value)
    assert f'{path}:3: malformed line' in msg
    assert reason in msg


def test_duplicate_id_names_both_lines(tmp_path):
    path = write(tmp_path / 'labeled.txt', [pair('a'), pair('b'), pair('a')])
    with pytest.raises(SplitError, match=r"labeled\.txt:3: duplicate id 'a' \(first at line 1\)"):
        read_split_file(path)


def test_missing_image_names_line_image_and_root(tmp_path):
    root = make_voc_root(tmp_path / 'VOC2012', ['a'])
    path = write(tmp_path / 'unlabeled.txt', [pair('a'), pair('gone')])
    with pytest.raises(SplitError) as err:
        read_split_file(path, data_root=root)
    msg = str(err.value)
    assert f"{path}:2: image 'JPEGImages/gone.jpg' is missing under the data root {root}" in msg
    assert osp.join(root, 'JPEGImages', 'gone.jpg') in msg


def test_all_problems_listed_then_truncated(tmp_path):
    path = write(tmp_path / 'l.txt', ['bad'] * 14)
    with pytest.raises(SplitError) as err:
        read_split_file(path)
    msg = str(err.value)
    assert '14 bad line(s)' in msg
    assert f'{path}:10: malformed' in msg and f'{path}:11:' not in msg
    assert '... and 4 more' in msg


def test_missing_or_empty_files_and_missing_root(tmp_path):
    with pytest.raises(SplitError, match='split file not found: .*nope.txt'):
        read_split_file(str(tmp_path / 'nope.txt'))
    empty = write(tmp_path / 'empty.txt', ['', '  '])
    with pytest.raises(SplitError, match='empty.txt: the split file lists no images'):
        read_split_file(empty)
    path = write(tmp_path / 'l.txt', [pair('a')])
    with pytest.raises(SplitError, match='data root not found: .*no_root'):
        read_split_file(path, data_root=str(tmp_path / 'no_root'))


def test_overlap_names_id_and_both_files_and_lines(tmp_path):
    lab = write(tmp_path / 'labeled.txt', [pair('a'), pair('b')])
    unl = write(tmp_path / 'unlabeled.txt', [pair('c'), pair('d'), pair('b')])
    with pytest.raises(SplitError) as err:
        read_split_pair(lab, unl)
    msg = str(err.value)
    assert '1 id(s) overlap' in msg
    assert f"id 'b' is both labeled ({lab}:2) and unlabeled ({unl}:3)" in msg


def test_check_disjoint_accepts_disjoint(tmp_path):
    lab = read_split_file(write(tmp_path / 'l.txt', [pair('a')]))
    unl = read_split_file(write(tmp_path / 'u.txt', [pair('b')]))
    check_disjoint(lab, unl)


def test_read_stems(tmp_path):
    assert read_stems(write(tmp_path / 's.txt', ['b', '', 'a  '])) == ['b', 'a']
    with pytest.raises(SplitError, match=r's2.txt:2: malformed line .*one stem per line'):
        read_stems(write(tmp_path / 's2.txt', ['a', pair('b')]))
    with pytest.raises(SplitError, match='stem list is empty'):
        read_stems(write(tmp_path / 's3.txt', ['']))


# ----------------------------------------------------------------------------- writing

def test_convert_writes_sorted_ann_files(tmp_path):
    root = make_voc_root(tmp_path / 'VOC2012', ['2008_1', '2007_2', '2009_3', '2007_9'])
    lab = write(tmp_path / 'labeled.txt', [pair('2008_1'), pair('2007_2')])
    unl = write(tmp_path / 'unlabeled.txt', [pair('2009_3'), '', pair('2007_9') + '  '])
    out = tmp_path / 'out' / '1-16'
    labeled, unlabeled = convert_split_files(lab, unl, str(out), data_root=root)
    assert labeled == ['2007_2', '2008_1'] and unlabeled == ['2007_9', '2009_3']
    assert (out / 'labeled.txt').read_text() == '2007_2\n2008_1\n'
    assert (out / 'unlabeled.txt').read_text() == '2007_9\n2009_3\n'


def test_write_refuses_to_overwrite_a_different_split(tmp_path):
    paths = write_ann_files(str(tmp_path), ['a'], ['b', 'c'])
    assert write_ann_files(str(tmp_path), ['a'], ['c', 'b']) == paths  # same content: fine
    with pytest.raises(SplitError) as err:
        write_ann_files(str(tmp_path), ['b'], ['a', 'c'])
    msg = str(err.value)
    assert f'{paths[0]} already exists with a different split' in msg
    assert 'overwrite=True' in msg and '--overwrite' in msg
    assert lines_of(paths[0]) == ['a']
    write_ann_files(str(tmp_path), ['b'], ['a', 'c'], overwrite=True)
    assert lines_of(paths[0]) == ['b'] and lines_of(paths[1]) == ['a', 'c']
    assert sorted(os.listdir(tmp_path)) == ['labeled.txt', 'unlabeled.txt']  # no temp files


def test_write_checks_both_files_before_writing_either(tmp_path):
    (tmp_path / 'unlabeled.txt').write_text('other\n')
    with pytest.raises(SplitError, match='unlabeled.txt already exists'):
        write_ann_files(str(tmp_path), ['a'], ['b'])
    assert not (tmp_path / 'labeled.txt').exists()


def test_write_refuses_a_file_as_out_dir(tmp_path):
    (tmp_path / 'f').write_text('')
    with pytest.raises(SplitError, match='exists and is not a folder'):
        write_ann_files(str(tmp_path / 'f'), ['a'], ['b'])


# ----------------------------------------------------------------------------- fractions

@pytest.mark.parametrize('value, expected', [
    ('1/16', Fraction(1, 16)), (' 1 / 8 ', Fraction(1, 8)), ('1_4', Fraction(1, 4)),
    ('1-16', Fraction(1, 16)), (0.0625, Fraction(1, 16)), ('0.0625', Fraction(1, 16)),
    (0.1, Fraction(1, 10)), (Fraction(3, 10), Fraction(3, 10)), ('1.0', Fraction(1)),
    (92, 92), ('92', 92), (np.int64(5), 5), ('1', 1),
])
def test_parse_fraction(value, expected):
    got = parse_fraction(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize('value, match', [
    ('0', 'at least 1'), (0, 'at least 1'), (-3, 'at least 1'), ('0.0', r'in \(0, 1\]'),
    (1.5, 'in \\(0, 1\\]; for a count of images give an integer'), ('3/2', r'in \(0, 1\]'),
    ('1/0', 'bad labeled fraction'), ('half', 'give a fraction such as 1/16'),
    (float('nan'), 'bad labeled fraction'), (True, 'bad labeled fraction'),
    (None, 'of type NoneType'),
])
def test_parse_fraction_rejects(value, match):
    with pytest.raises(SplitError, match=match):
        parse_fraction(value)


def test_fraction_name():
    assert [fraction_name(v) for v in ('1/16', 0.125, '1_4', 0.3, 92, '1.0')] == \
        ['1-16', '1-8', '1-4', '3-10', '92', '1-1']


def test_num_labeled_is_ceil_at_least_one_and_exact():
    # ceil reproduces the published VOC blended counts (REFERENCE.md): 662 / 1323 / 2646
    assert [num_labeled(10582, f) for f in ('1/16', '1/8', '1/4')] == [662, 1323, 2646]
    assert num_labeled(367, '1/16') == 23 and num_labeled(367, '1/4') == 92
    assert num_labeled(10, '1/10') == 1 and num_labeled(10, 0.1) == 1  # no float round-up
    assert num_labeled(5, '1/64') == 1
    assert num_labeled(5, 5) == 5 and num_labeled(5, 1.0) == 5
    with pytest.raises(SplitError, match='bad labeled count 6: there are only 5 images'):
        num_labeled(5, 6)
    with pytest.raises(SplitError, match='empty list'):
        num_labeled(0, '1/2')


# ----------------------------------------------------------------------------- seeded splits

STEMS = [f'img_{i:04d}' for i in range(1000)]


@pytest.mark.parametrize('fraction, count', [
    ('1/16', 63), ('1/8', 125), ('1/4', 250), (0.5, 500), (92, 92), ('1/2000', 1), (1.0, 1000)])
def test_seeded_split_counts_cover_all_and_are_disjoint(fraction, count):
    labeled, unlabeled = seeded_split(STEMS, fraction, seed=0)
    assert len(labeled) == count and len(unlabeled) == 1000 - count
    assert labeled == sorted(labeled) and unlabeled == sorted(unlabeled)
    assert set(labeled).isdisjoint(unlabeled)
    assert set(labeled) | set(unlabeled) == set(STEMS)


def test_seeded_split_is_deterministic_and_seed_dependent():
    first = seeded_split(STEMS, '1/16', seed=0)
    assert seeded_split(STEMS, '1/16', seed=0) == first
    assert seeded_split(STEMS[::-1], '1/16', seed=0) == first  # input order does not matter
    assert seeded_split(STEMS, '1/16', seed=1)[0] != first[0]
    assert seeded_split(STEMS, '1/16', seed=np.int64(0)) == first


def test_seeded_split_pinned_values():
    """The split of a given seed must never change: published results depend on it. This
    fails if numpy's PCG64 stream or the drawing scheme changes."""
    stems = sorted(f's{i}' for i in range(20))  # the permutation indexes the sorted stems
    labeled, _ = seeded_split(stems[::-1], 3, seed=0)
    assert labeled == sorted(stems[i] for i in np.random.default_rng(0).permutation(20)[:3])
    assert labeled == ['s12', 's14', 's9']


def test_seeded_splits_are_nested_for_one_seed():
    l16, l8, l4 = (set(seeded_split(STEMS, f, seed=3)[0]) for f in ('1/16', '1/8', '1/4'))
    assert l16 < l8 < l4


def test_seeded_split_rejects_duplicates_and_bad_seeds():
    with pytest.raises(SplitError, match='duplicate id.*: a'):
        seeded_split(['a', 'b', 'a'], 1)
    for seed in (-1, 1.5, None, True):
        with pytest.raises(SplitError, match='bad seed'):
            seeded_split(['a', 'b'], 1, seed=seed)


def test_list_stems_recursive_with_suffix(tmp_path):
    for rel in ('b.jpg', 'a.jpg', 'sub/c.jpg', 'x.png', '.hidden.jpg', 'sub/deeper/d.jpg'):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b'')
    assert list_stems(str(tmp_path), '.jpg') == ['a', 'b', 'sub/c', 'sub/deeper/d']
    assert list_stems(str(tmp_path), '.png') == ['x']
    with pytest.raises(SplitError, match=r'no \*.tif files under .*is --suffix right'):
        list_stems(str(tmp_path), '.tif')
    with pytest.raises(SplitError, match='image folder not found: .*nope'):
        list_stems(str(tmp_path / 'nope'))


# ----------------------------------------------------------------------------- CLI

def make_splits(*args):
    return subprocess.run([sys.executable, MAKE_SPLITS, *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_cli_help():
    for sub in ([], ['convert'], ['random']):
        res = make_splits(*sub, '--help')
        assert res.returncode == 0, res.stderr
    assert '--fraction' in res.stdout and 'ceil' in res.stdout


def test_cli_convert_end_to_end(tmp_path):
    root = make_voc_root(tmp_path / 'VOC2012', ['c', 'a', 'b', 'd', 'e'])
    lab = write(tmp_path / 'splits' / 'labeled.txt', [pair('c'), pair('a')])
    unl = write(tmp_path / 'splits' / 'unlabeled.txt', [pair('e'), pair('b'), pair('d')])
    out = tmp_path / 'data' / 'splits' / 'voc_classic' / '92'
    res = make_splits('convert', '--labeled', lab, '--unlabeled', unl, '--out-dir', out,
                      '--data-root', root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines() == [
        f'convert: 2 labeled + 3 unlabeled = 5 images -> {out}/labeled.txt, '
        f'{out}/unlabeled.txt']
    assert lines_of(out / 'labeled.txt') == ['a', 'c']
    assert lines_of(out / 'unlabeled.txt') == ['b', 'd', 'e']

    write(tmp_path / 'splits' / 'labeled.txt', [pair('c')])  # a different split now
    res = make_splits('convert', '--labeled', lab, '--unlabeled', unl, '--out-dir', out)
    assert res.returncode == 1
    assert 'already exists with a different split' in res.stderr and '--overwrite' in res.stderr
    assert 'Traceback' not in res.stderr
    res = make_splits('convert', '--labeled', lab, '--unlabeled', unl, '--out-dir', out,
                      '--overwrite')
    assert res.returncode == 0, res.stderr
    assert lines_of(out / 'labeled.txt') == ['c']


@pytest.mark.parametrize('labeled, unlabeled, expected', [
    ([pair('a'), pair('a')], [pair('b')], "labeled.txt:2: duplicate id 'a'"),
    ([pair('a')], [pair('b'), pair('a')], "id 'a' is both labeled"),
    ([pair('a')], [pair('zz')], "unlabeled.txt:1: image 'JPEGImages/zz.jpg' is missing"),
    ([pair('a'), 'JPEGImages/b.jpg'], [pair('c')], 'labeled.txt:2: malformed line'),
])
def test_cli_convert_bad_input_fails_clearly(tmp_path, labeled, unlabeled, expected):
    root = make_voc_root(tmp_path / 'root', ['a', 'b', 'c'])
    lab = write(tmp_path / 'labeled.txt', labeled)
    unl = write(tmp_path / 'unlabeled.txt', unlabeled)
    res = make_splits('convert', '--labeled', lab, '--unlabeled', unl,
                      '--out-dir', tmp_path / 'out', '--data-root', root)
    assert res.returncode == 1
    assert res.stderr.startswith('make_splits.py convert: error:')
    assert expected in res.stderr
    assert 'Traceback' not in res.stderr
    assert not (tmp_path / 'out').exists()


def test_cli_random_several_fractions(tmp_path):
    img_dir = tmp_path / 'images' / 'train'
    img_dir.mkdir(parents=True)
    for i in range(40):
        (img_dir / f'f{i:02d}.jpg').write_bytes(b'')
    out = tmp_path / 'splits' / 'toy'
    res = make_splits('random', '--img-dir', img_dir, '--suffix', '.jpg', '--fraction',
                      '1/16', '1/8', '0.25', '7', '--seed', '0', '--out-dir', out)
    assert res.returncode == 0, res.stderr
    summary = res.stdout.strip().splitlines()
    assert len(summary) == 4
    assert summary[0].startswith(f'random 1/16 (seed 0) of {img_dir}: 3 labeled + 37 unlabeled')
    for name, k in (('1-16', 3), ('1-8', 5), ('1-4', 10), ('7', 7)):
        labeled, unlabeled = lines_of(out / name / 'labeled.txt'), \
            lines_of(out / name / 'unlabeled.txt')
        assert len(labeled) == k and len(labeled) + len(unlabeled) == 40
        assert sorted(labeled + unlabeled) == [f'f{i:02d}' for i in range(40)]
        assert labeled == seeded_split([f'f{i:02d}' for i in range(40)], name.replace('-', '/'),
                                       seed=0)[0]

    # one fraction writes into --out-dir itself; --stems reads an ann_file
    res = make_splits('random', '--stems', out / '1-4' / 'labeled.txt', '--fraction', '1/2',
                      '--seed', '5', '--out-dir', tmp_path / 'half')
    assert res.returncode == 0, res.stderr
    assert len(lines_of(tmp_path / 'half' / 'labeled.txt')) == 5


def test_cli_random_bad_input_fails_clearly(tmp_path):
    res = make_splits('random', '--img-dir', tmp_path / 'missing', '--fraction', '1/16',
                      '--out-dir', tmp_path / 'out')
    assert res.returncode == 1 and 'image folder not found' in res.stderr
    (tmp_path / 'imgs').mkdir()
    (tmp_path / 'imgs' / 'a.jpg').write_bytes(b'')
    res = make_splits('random', '--img-dir', tmp_path / 'imgs', '--fraction', '1/16', 'abc',
                      '--out-dir', tmp_path / 'out')
    assert res.returncode == 1 and "bad labeled fraction 'abc'" in res.stderr
    res = make_splits('random', '--img-dir', tmp_path / 'imgs', '--fraction', '1/4', '0.25',
                      '--out-dir', tmp_path / 'out')
    assert res.returncode == 1 and 'the same fraction is given twice' in res.stderr
    assert 'Traceback' not in res.stderr
    assert not (tmp_path / 'out').exists()


# ----------------------------------------------------------------------------- real CamVid

@pytest.fixture(scope='module')
def camvid_train_stems():
    img_dir = osp.join(REAL_CAMVID, 'images', 'train')
    if not osp.isdir(img_dir):
        pytest.skip(f'real CamVid {REAL_CAMVID} is absent (it lives beside the repository, in '
                    '../shared/data, and is never committed)')
    return list_stems(img_dir, '.jpg')


def test_real_camvid_seeded_splits(camvid_train_stems, tmp_path):
    """367 train images: ceil(367/16) = 23, ceil(367/8) = 46, ceil(367/4) = 92 labeled."""
    assert len(camvid_train_stems) == 367
    res = make_splits('random', '--img-dir', osp.join(REAL_CAMVID, 'images', 'train'),
                      '--fraction', '1/16', '1/8', '1/4', '--seed', '0', '--out-dir', tmp_path)
    assert res.returncode == 0, res.stderr
    for name, k in (('1-16', 23), ('1-8', 46), ('1-4', 92)):
        labeled = lines_of(tmp_path / name / 'labeled.txt')
        unlabeled = lines_of(tmp_path / name / 'unlabeled.txt')
        assert len(labeled) == k and len(unlabeled) == 367 - k
        assert sorted(labeled + unlabeled) == camvid_train_stems
        for stem in labeled + unlabeled:
            assert osp.isfile(osp.join(REAL_CAMVID, 'images', 'train', f'{stem}.jpg'))
            assert osp.isfile(osp.join(REAL_CAMVID, 'labels', 'train', f'{stem}.png'))
