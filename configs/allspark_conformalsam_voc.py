# ConformalSAM(AllSpark) on VOC classic 366: AllSpark's config, plus the one ConformalSAM base.
_base_ = ['./allspark/allspark_mit-b5_voc-classic-366.py', './_base_/conformalsam_voc.py']
