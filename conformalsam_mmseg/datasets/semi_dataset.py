from mmengine.dataset import ConcatDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class SemiDataset(ConcatDataset):
    """The labeled and the unlabeled set of a split, as sources 0 and 1 of one ``ConcatDataset``.

    Naming the two parts lets a config override one of them by key, which a list of datasets
    does not allow::

        train_dataloader = dict(dataset=dict(
            labeled=dict(ann_file='splits/voc_classic/92/labeled.txt'),
            unlabeled=dict(ann_file='splits/voc_classic/92/unlabeled.txt')))

    ``MultiSourceSampler`` draws a fixed number of samples from each part per batch.
    """

    def __init__(self, labeled, unlabeled, **kwargs):
        super().__init__(datasets=[labeled, unlabeled], **kwargs)

    @property
    def labeled(self):
        return self.datasets[0]

    @property
    def unlabeled(self):
        return self.datasets[1]
