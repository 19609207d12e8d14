# ConformalSAM(UniMatch) on VOC classic 366: UniMatch's config, plus the one ConformalSAM base.
_base_ = [
    './unimatch/unimatch_deeplabv3plus_r101_voc-classic-366.py', './_base_/conformalsam_voc.py'
]
