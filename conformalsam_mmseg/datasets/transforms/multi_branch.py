import copy

from mmcv.transforms import BaseTransform, Compose
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class MultiBranch(BaseTransform):
    """Several views of one sample, one pipeline per branch (MMDetection 3.x's ``MultiBranch``).

    Each branch pipeline runs on a deep copy of the results and ends with ``PackSegInputs``.
    Branches of ``branch_field`` that this pipeline does not make are None, so labeled and
    unlabeled samples of one batch share the same keys and collate together; the
    ``MultiBranchDataPreprocessor`` drops the Nones.

    For UniMatch's weak and strong views of the SAME crop, put the geometric transforms
    (load, ``LoadDummySegMap``, ``RandomRescale``, ``RandomCrop``, ``RandomFlip``) before this
    transform; the branches then only add photometric transforms (``ColorJitter``,
    ``RandomGrayscale``, ``GaussianBlur``) and ``PackSegInputs``::

        dict(type='MultiBranch',
             branch_field=['sup', 'unsup_weak', 'unsup_strong1', 'unsup_strong2'],
             unsup_weak=[dict(type='PackSegInputs')],
             unsup_strong1=strong_photometric + [dict(type='PackSegInputs')],
             unsup_strong2=strong_photometric + [dict(type='PackSegInputs')])

    Output: ``{'inputs': {branch: Tensor or None}, 'data_samples': {branch: SegDataSample
    or None}}``.

    Args:
        branch_field (list[str]): every branch name of the batch, in both the labeled and the
            unlabeled pipeline.
        exclusive_keys (dict[str, list[str]]): keys of the results that only one branch
            receives, e.g. ``dict(unsup_weak=['annotator_topk_map'])``: the other branches
            never see them (nor them in ``seg_fields``), and that branch gets them uncopied,
            since nothing else holds them. For large fields that only one view packs.
        **branch_pipelines (list[dict]): the pipeline of each branch this sample makes.
    """

    def __init__(self, branch_field, exclusive_keys=None, **branch_pipelines):
        unknown = sorted(set(branch_pipelines) - set(branch_field))
        if unknown:
            raise ValueError(f'MultiBranch: pipelines given for {unknown}, which are not in '
                             f'branch_field={list(branch_field)}; add them there.')
        if not branch_pipelines:
            raise ValueError('MultiBranch: give at least one branch pipeline, e.g. '
                             "sup=[dict(type='PackSegInputs')]")
        self.exclusive_keys = {b: list(keys) for b, keys in (exclusive_keys or {}).items()}
        stray = sorted(set(self.exclusive_keys) - set(branch_pipelines))
        if stray:
            raise ValueError(f'MultiBranch: exclusive_keys names {stray}, which this pipeline '
                             f'does not make (its branches: {sorted(branch_pipelines)})')
        owners = [k for keys in self.exclusive_keys.values() for k in keys]
        if len(owners) != len(set(owners)):
            raise ValueError(f'MultiBranch: a key of exclusive_keys={self.exclusive_keys} is '
                             'given to two branches; give each key to one branch')
        self._exclusive = set(owners)
        self.branch_field = list(branch_field)
        # Built from mmseg's registry (which reaches mmcv's transforms through its parent), so
        # the branches resolve without depending on the current default scope.
        self.branch_pipelines = {
            branch: Compose([TRANSFORMS.build(t) if isinstance(t, dict) else t
                             for t in pipeline])
            for branch, pipeline in branch_pipelines.items()
        }

    def transform(self, results):
        multi_results = {branch: {'inputs': None, 'data_samples': None}
                         for branch in self.branch_field}
        for branch, pipeline in self.branch_pipelines.items():
            branch_results = pipeline(self._branch_input(results, branch))
            if branch_results is None:  # a transform rejected the sample: the dataset redraws
                return None
            if set(branch_results) != {'inputs', 'data_samples'}:
                raise ValueError(
                    f"MultiBranch: branch '{branch}' returned keys {sorted(branch_results)}; "
                    "end its pipeline with dict(type='PackSegInputs').")
            multi_results[branch] = branch_results
        packed = {}
        for branch, branch_results in multi_results.items():
            for key, value in branch_results.items():
                packed.setdefault(key, {})[branch] = value
        return packed

    def _branch_input(self, results, branch):
        if not self._exclusive:
            return copy.deepcopy(results)
        shared = copy.deepcopy({k: v for k, v in results.items() if k not in self._exclusive})
        own = self.exclusive_keys.get(branch, ())
        shared.update((k, results[k]) for k in own if k in results)
        if 'seg_fields' in shared:
            shared['seg_fields'] = [f for f in shared['seg_fields']
                                    if f not in self._exclusive or f in own]
        return shared

    def __repr__(self):
        return (f'{self.__class__.__name__}(branch_field={self.branch_field}, '
                f'branch_pipelines={list(self.branch_pipelines)}, '
                f'exclusive_keys={self.exclusive_keys})')
