# CPU-sized ConformalSAM(UniMatch) on CamVid 1/8 with the cross-sequence annotator.
_base_ = [
    './unimatch/unimatch_deeplabv3plus_effl0_camvid-1-8.py', './_base_/conformalsam_camvid.py'
]
