"""tools/generate_pseudo_labels.py on a VOC layout, as a new user types its commands: the
annotator's required options, ground truth for the simulated annotator, relative --ann-file
paths, missing images, and the remake command each split's entries quote."""
import importlib.util
import os
import os.path as osp

import pytest

from conformalsam_mmseg.annotators import AnnotatorCache, CacheEntryError
from conformalsam_mmseg.annotators.cache import read_manifest
from conftest import REPO
from voc_layout import SPLIT, VOC, make_voc_workspace

TOOL = osp.join(REPO, 'tools', 'generate_pseudo_labels.py')
CONFIG = 'configs/allspark_conformalsam_voc.py'
OUT = 'data/annotator_cache/seem_voc'


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('generate_pseudo_labels', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A VOC classic layout whose unlabeled images have no mask, as the current folder."""
    stems = make_voc_workspace(tmp_path, num_labeled=3, num_unlabeled=3)
    monkeypatch.chdir(tmp_path)
    return stems


def test_seem_without_its_options_says_which_before_loading_anything(tool, workspace):
    with pytest.raises(SystemExit) as info:
        tool.main([CONFIG, '--annotator', 'seem', '--split', 'labeled', '--out', OUT])
    message = str(info.value)
    assert message.startswith('error: --annotator seem (SEEMAnnotator) needs --annotator-cfg '
                              'config_file=... checkpoint=...')
    assert 'repo=/path/to/SEEM' in message and 'docs/annotators.md' in message
    assert not osp.exists(OUT)
    with pytest.raises(SystemExit, match=r'--annotator-cfg checkpoint=no/seem\.pt: no such file'):
        tool.main([CONFIG, '--annotator', 'seem', '--annotator-cfg', f'config_file={CONFIG}',
                   'checkpoint=no/seem.pt', '--split', 'labeled', '--out', OUT])
    with pytest.raises(SystemExit, match='--annotator sam: no such annotator'):
        tool.main([CONFIG, '--annotator', 'sam', '--split', 'labeled', '--out', OUT])


def test_simulated_on_unlabeled_voc_says_how_to_point_it_at_labels(tool, workspace, tmp_path):
    labeled, unlabeled = workspace
    with pytest.raises(SystemExit) as info:
        tool.main([CONFIG, '--annotator', 'simulated', '--split', 'unlabeled', '--out', OUT])
    message = str(info.value)
    assert 'needs ground truth' in message
    assert '3 of the 3 images of split \'unlabeled\' have no label file' in message
    assert '--seg-map-path DIR' in message and 'SegmentationClassAug' in message
    assert not osp.exists(OUT)  # checked before any work

    # the labels, wherever they are (here: masks made for the unlabeled images too)
    make_voc_workspace(tmp_path, num_labeled=3, num_unlabeled=3, unlabeled_masks=True)
    os.rename(osp.join(VOC, 'SegmentationClass'), osp.join(VOC, 'AllMasks'))
    stats = tool.main([CONFIG, '--annotator', 'simulated', '--split', 'unlabeled', '--out', OUT,
                       '--seg-map-path', 'VOCdevkit/VOC2012/AllMasks'])
    assert stats == dict(written=3, skipped=0, total=3)
    assert '--seg-map-path VOCdevkit/VOC2012/AllMasks' in read_manifest(OUT)['command']


def test_ann_file_relative_to_the_current_folder(tool, workspace):
    labeled, _ = workspace
    with open('few.txt', 'w') as f:
        f.write(labeled[1] + '\n')
    stats = tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT,
                       '--ann-file', 'few.txt'])
    assert stats['written'] == 1 and os.listdir(OUT) != []
    # as before, a path relative to data_root works too
    stats = tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT,
                       '--ann-file', 'splits/voc_classic/366/labeled.txt'])
    assert stats == dict(written=2, skipped=1, total=3)
    with pytest.raises(SystemExit, match='--ann-file nope.txt: no such file in the current '
                       'folder'):
        tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT,
                   '--ann-file', 'nope.txt'])


def test_a_split_naming_a_missing_image_fails_before_annotating(tool, workspace):
    labeled, _ = workspace
    with open(osp.join(SPLIT, 'labeled.txt'), 'a') as f:
        f.write('2008_999999\n')
    with pytest.raises(SystemExit) as info:
        tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT])
    message = str(info.value)
    assert ('1 of the 4 images of the split file data/splits/voc_classic/366/labeled.txt do '
            'not exist: data/VOCdevkit/VOC2012/JPEGImages/2008_999999.jpg') in message
    assert not osp.exists(OUT)


def test_an_empty_split_names_its_file(tool, workspace):
    open(osp.join(SPLIT, 'labeled.txt'), 'w').close()
    with pytest.raises(SystemExit, match='split file data/splits/voc_classic/366/labeled.txt'):
        tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT])


def test_a_broken_entry_quotes_the_command_of_its_own_split(tool, workspace):
    labeled, unlabeled = workspace
    seg = ['--seg-map-path', 'VOCdevkit/VOC2012/SegmentationClass']
    tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT])
    make_voc_workspace('.', num_labeled=3, num_unlabeled=3, unlabeled_masks=True)
    tool.main([CONFIG, '--annotator', 'simulated', '--split', 'unlabeled', '--out', OUT, *seg])
    runs = read_manifest(OUT)['splits']
    assert sorted(runs) == ['labeled', 'unlabeled']
    assert runs['labeled']['stems'] == labeled and runs['unlabeled']['stems'] == unlabeled

    with open(osp.join(OUT, labeled[0] + '.topk'), 'r+b') as f:
        f.truncate(40)  # a broken labeled entry
    cache = AnnotatorCache(OUT, num_classes=21)
    with pytest.raises(CacheEntryError) as info:
        cache.load(labeled[0])
    assert runs['labeled']['command'] in str(info.value)
    assert '--split labeled' in str(info.value) and '--split unlabeled' not in str(info.value)
    os.remove(osp.join(OUT, unlabeled[0] + '.topk'))
    with pytest.raises(CacheEntryError, match='--split unlabeled --out'):
        cache.load(unlabeled[0])
    # the labeled command, quoted, remakes the broken entry (and only it)
    stats = tool.main([CONFIG, '--annotator', 'simulated', '--split', 'labeled', '--out', OUT])
    assert stats == dict(written=1, skipped=2, total=3)
    assert cache.load(labeled[0]).topk == 21  # every VOC class: the default up to 32
    assert sorted(read_manifest(OUT)['splits']) == ['labeled', 'unlabeled']
