"""docs/training.md's small demo command runs as written, and each of its two trainings is
evaluated once, after training (mmengine also evaluates at the last iteration by itself)."""
import os
import re
import shlex
import subprocess
import sys

from doc_recipes import bash_block, commands


def test_small_demo_evaluates_each_run_once(tmp_path):
    (line,) = commands(bash_block('docs/training.md', 'tools/demo.py'))
    assert line.startswith('python tools/demo.py --iters 2 --num-train 16 --num-val 4 ')
    line = line.replace('work_dirs/demo_small', str(tmp_path / 'demo'))
    line = re.sub(r'^python ', shlex.quote(sys.executable) + ' ', line)
    proc = subprocess.run(['bash', '-c', line], cwd=os.path.dirname(os.path.dirname(__file__)),
                          env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert len(re.findall(r'Iter\(val\) \[4/4\]', out)) == 2, out[-4000:]
    assert '2 labeled + 14 unlabeled training images, 2 iterations each' in out
    assert re.search(r'supervised only \(labeled images\): +val mIoU +\d+\.\d+%', out)
    assert re.search(r'ConformalSAM \(Stage I \+ self-reliance\): +val mIoU +\d+\.\d+%', out)
