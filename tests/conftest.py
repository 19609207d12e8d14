import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = osp.join(osp.dirname(REPO), 'shared', 'data')


def shared_data(name):
    """Path of a real data set in ../shared/data, or skip the test saying why."""
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'real data {path} is absent (it lives beside the repository, '
                    'in ../shared/data, and is never committed)')
    return path


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory):
    """The generated shapes data set, small, written once per test session."""
    from conformalsam_mmseg.datasets import make_shapes_dataset
    return make_shapes_dataset(
        str(tmp_path_factory.mktemp('shapes')), num_train=24, num_val=8,
        height=64, width=80, seed=0)


@pytest.fixture
def python():
    return sys.executable


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Build models and transforms from mmseg's registries, as configs do via default_scope."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
