import copy

from mmengine.dataset import ConcatDataset
from mmseg.registry import DATASETS

from .annotator_pipeline import annotated_pipeline, dataset_classes


@DATASETS.register_module()
class SemiDataset(ConcatDataset):
    """The labeled and the unlabeled set of a split, as sources 0 and 1 of one ``ConcatDataset``.

    Naming the two parts lets a config override one of them by key, which a list of datasets
    does not allow::

        train_dataloader = dict(dataset=dict(
            labeled=dict(ann_file='splits/voc_classic/92/labeled.txt'),
            unlabeled=dict(ann_file='splits/voc_classic/92/unlabeled.txt')))

    ``MultiSourceSampler`` draws a fixed number of samples from each part per batch.

    Args:
        labeled, unlabeled (dict): the two datasets' configs.
        annotator_cache (str, optional): ConformalSAM's annotator cache
            (``tools/generate_pseudo_labels.py``). When set, the unlabeled pipeline gets the
            annotator's output (``annotated_pipeline``: ``LoadAnnotatorOutput``,
            ``PadSegFields``, ``PackAnnotatorOutput``; ``tools/print_config.py`` prints it) and
            ``ConformalCalibrationHook`` calibrates on the labeled images' entries.
    """

    def __init__(self, labeled, unlabeled, annotator_cache=None, **kwargs):
        self.annotator_cache = annotator_cache
        if annotator_cache:
            unlabeled = copy.deepcopy(unlabeled)
            unlabeled['pipeline'] = annotated_pipeline(
                unlabeled['pipeline'], annotator_cache, dataset_classes(unlabeled))
        super().__init__(datasets=[labeled, unlabeled], **kwargs)

    @property
    def labeled(self):
        return self.datasets[0]

    @property
    def unlabeled(self):
        return self.datasets[1]
