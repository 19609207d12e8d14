# CPU-sized AllSpark on CamVid, labeled 1-16 of train: ./allspark_deeplabv3plus_effl0_camvid-1-8.py
# with another split.
_base_ = './allspark_deeplabv3plus_effl0_camvid-1-8.py'
split = 'splits/camvid/1-16'
train_dataloader = dict(
    dataset=dict(
        labeled=dict(ann_file=split + '/labeled.txt'),
        unlabeled=dict(ann_file=split + '/unlabeled.txt')))
