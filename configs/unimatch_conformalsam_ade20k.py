# ConformalSAM(UniMatch) on ADE20K 1/64.
_base_ = [
    './unimatch/unimatch_deeplabv3plus_r101_ade20k-1-64.py', './_base_/conformalsam_ade20k.py'
]
