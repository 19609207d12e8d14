# CPU-sized ConformalSAM(AllSpark) on CamVid 1/8 with the cross-sequence annotator, on the
# network of the other CamVid configs (the SegFormer MiT-B0 version, whose ImageNet weights are a
# download: _base_ = ['./allspark/allspark_mit-b0_camvid-1-8.py', ...]).
_base_ = [
    './allspark/allspark_deeplabv3plus_effl0_camvid-1-8.py', './_base_/conformalsam_camvid.py'
]
