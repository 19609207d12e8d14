"""The conformal core works where OpenMMLab is not installed."""
import subprocess
import sys

CODE = '''
import sys
for name in ('mmseg', 'mmengine', 'mmcv'):
    sys.modules[name] = None  # as if not installed: importing them raises ImportError
import torch
from conformalsam_mmseg.conformal import ConformalCalibrator, filter_pseudo_labels
probs = torch.tensor([[0.9, 0.6, 0.2], [0.1, 0.4, 0.8]]).view(1, 2, 1, 3)
labels = torch.tensor([[[0, 1, 1]]])
cal = ConformalCalibrator(num_classes=2, alpha=0.5, method='exact')
cal.update(probs, labels)
q = cal.thresholds()
print(float(q[0]), filter_pseudo_labels(probs, q, background_index=None).tolist())
'''


def test_conformal_core_without_openmmlab():
    out = subprocess.run([sys.executable, '-c', CODE], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # scores 1 - p_y: 0.1, 0.6, 0.2; n = 3, alpha = 0.5: rank ceil(4 * 0.5) = 2 -> q = 0.2.
    q, labels = out.stdout.split(' ', 1)
    assert abs(float(q) - 0.2) < 1e-6
    # C(x) = {k : 1 - p_k <= 0.2}: pixel 0 -> {0}; pixel 1 -> {} (255); pixel 2 -> {1}.
    assert labels.strip() == '[[[0, 255, 1]]]'
