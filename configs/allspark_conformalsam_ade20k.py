# ConformalSAM(AllSpark) on ADE20K 1/64.
_base_ = ['./allspark/allspark_mit-b5_ade20k-1-64.py', './_base_/conformalsam_ade20k.py']
