"""docs/annotators.md's tool commands run as written on a tiny VOC made here: the simulated
annotator on both VOC splits (the offline stand-in the page gives for SEEM), then the
pseudo-label pictures, calibrated on the spot and from a thresholds file. The cross-sequence
CamVid annotator's commands train for minutes on real CamVid: tests/test_camvid_annotator_tool.py
runs that tool with a short schedule instead."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from conformalsam_mmseg.annotators.cache import read_manifest
from doc_recipes import bash_block, commands
from voc_layout import VOC, make_voc_workspace

CONFIG = 'configs/allspark_conformalsam_voc.py'


def _run(line, cwd):
    line = re.sub(r'^python ', shlex.quote(sys.executable) + ' ', line)
    proc = subprocess.run(['bash', '-c', line], cwd=str(cwd), capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{line}\n{out[-4000:]}'
    return out


def test_simulated_voc_cache_and_pictures(tmp_path):
    labeled, unlabeled = make_voc_workspace(tmp_path, num_labeled=3, num_unlabeled=3,
                                            unlabeled_masks=True)
    # the blended setting's mask folder, which holds the unlabeled images' masks
    shutil.copytree(tmp_path / VOC / 'SegmentationClass',
                    tmp_path / VOC / 'SegmentationClassAug')
    for name in unlabeled:
        os.remove(tmp_path / VOC / 'SegmentationClass' / f'{name}.png')

    generate = commands(bash_block('docs/annotators.md', '--annotator simulated --split'))
    assert len(generate) == 2 and all(CONFIG in line for line in generate)
    for line in generate:
        _run(line, tmp_path)
    cache = tmp_path / 'data' / 'annotator_cache' / 'simulated_voc'
    assert sorted(n[:-5] for n in os.listdir(cache) if n.endswith('.topk')) == sorted(
        labeled + unlabeled)
    assert sorted(read_manifest(str(cache))['splits']) == ['labeled', 'unlabeled']

    pictures = commands(bash_block('docs/annotators.md', 'tools/visualize_pseudo_labels.py'))
    from_file, on_the_spot = pictures
    cache_dir = 'data/annotator_cache/simulated_voc'
    on_the_spot = re.sub(r' \[[^]]*\]', '', on_the_spot)  # the optional flags left out
    _run(on_the_spot.replace('CONFIG', CONFIG).replace('DIR', cache_dir), tmp_path)
    assert sorted(os.listdir(tmp_path / 'work_dirs' / 'vis')) == [f'{s}.png' for s in labeled]

    shutil.rmtree(tmp_path / 'work_dirs' / 'vis')
    os.makedirs(tmp_path / 'WORK_DIR')
    with open(tmp_path / 'WORK_DIR' / 'calibration_report.json', 'w') as f:
        json.dump([0.5] * 21, f)  # a JSON list of q_k, one of the accepted forms
    _run(from_file.replace('CONFIG', CONFIG).replace('DIR', cache_dir, 1), tmp_path)
    assert len(os.listdir(tmp_path / 'work_dirs' / 'vis')) == 3
