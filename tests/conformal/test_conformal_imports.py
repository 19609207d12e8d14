"""The conformal core is pure torch + numpy: it imports nothing from OpenMMLab.

Checked in fresh interpreters, since other tests import mmseg into this one.
"""
import os.path as osp
import subprocess
import sys


REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OPENMMLAB = "[m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmengine', 'mmcv')]"


def _run(code):
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_conformal_package_imports_no_openmmlab():
    # load conformalsam_mmseg.conformal under an empty parent package, so that only the
    # conformal modules themselves run
    code = f'''
import sys, types
parent = types.ModuleType('conformalsam_mmseg')
parent.__path__ = ['conformalsam_mmseg']
sys.modules['conformalsam_mmseg'] = parent
import conformalsam_mmseg.conformal as conformal
assert conformal.ConformalCalibrator and conformal.filter_pseudo_labels
print({OPENMMLAB})
'''
    assert _run(code) == '[]'
