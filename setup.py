from setuptools import find_packages, setup


def read_requirements(path):
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


setup(
    name='conformalsam_mmseg',
    version='0.1.0',
    description='ConformalSAM (ICCV 2025) for semi-supervised semantic '
    'segmentation as an MMSegmentation 1.x plug-in',
    packages=find_packages(include=['conformalsam_mmseg*']),
    python_requires='>=3.9',
    install_requires=['torch>=2.0', 'mmcv>=2.0.0rc4,<2.2.0'] +
    read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
)
