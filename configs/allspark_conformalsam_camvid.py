# CPU-sized ConformalSAM(AllSpark) on CamVid 1/8 with the cross-sequence annotator.
_base_ = ['./allspark/allspark_mit-b0_camvid-1-8.py', './_base_/conformalsam_camvid.py']
