from mmengine.model import BaseDataPreprocessor
from mmseg.registry import MODELS


@MODELS.register_module()
class MultiBranchDataPreprocessor(BaseDataPreprocessor):
    """Prepare each branch of a multi-branch batch with one wrapped ``SegDataPreProcessor``.

    MMDetection 3.x's ``MultiBranchDataPreprocessor`` for segmentation. A training batch made
    by ``MultiBranch`` holds ``{'inputs': {branch: [Tensor or None]}, 'data_samples':
    {branch: [SegDataSample or None]}}``; the Nones (branches a sample does not make, e.g.
    'sup' for an unlabeled image) are dropped and each branch is normalised, converted to RGB
    and padded by the wrapped preprocessor. Its ``seg_pad_val`` (255) pads ``gt_sem_seg``: the
    ground truth for 'sup', and for the unlabeled branches the ``LoadDummySegMap`` map, which
    becomes UniMatch's ignore mask (0 = image pixel, 255 = padding). Give the wrapped
    preprocessor ``size=crop_size`` so every branch has the same H, W and the labeled and
    unlabeled images can be concatenated.

    A batch whose ``inputs`` is not a dict of branches (validation, testing) goes to the
    wrapped preprocessor unchanged, so val / test configs need nothing special.

    Returns (training): ``{'inputs': {branch: Tensor (B_branch, 3, H, W)}, 'data_samples':
    {branch: list[SegDataSample]}}``; a branch with no sample in the batch is left out.

    Args:
        data_preprocessor (dict): config of the wrapped preprocessor, e.g.
            ``dict(type='SegDataPreProcessor', mean=..., std=..., bgr_to_rgb=True,
            size=crop_size, seg_pad_val=255)``.
    """

    def __init__(self, data_preprocessor):
        super().__init__()
        self.data_preprocessor = MODELS.build(data_preprocessor)

    def forward(self, data, training=False):
        if not isinstance(data.get('inputs'), dict):
            return self.data_preprocessor(data, training)
        multi_inputs, multi_samples = {}, {}
        for branch, inputs in data['inputs'].items():
            samples = data['data_samples'][branch]
            keep = [i for i, x in enumerate(inputs) if x is not None]
            if not keep:
                continue
            if any(samples[i] is None for i in keep):
                raise ValueError(f"MultiBranchDataPreprocessor: branch '{branch}' has images "
                                 'without data samples; end each branch with PackSegInputs.')
            branch_data = self.data_preprocessor(
                dict(inputs=[inputs[i] for i in keep],
                     data_samples=[samples[i] for i in keep]), training)
            multi_inputs[branch] = branch_data['inputs']
            multi_samples[branch] = branch_data['data_samples']
        return dict(inputs=multi_inputs, data_samples=multi_samples)

    # The wrapped preprocessor casts data to its own device: keep it where this one is.
    # (nn.Module.to moves children's tensors but not their recorded device.)
    def to(self, *args, **kwargs):
        self.data_preprocessor.to(*args, **kwargs)
        return super().to(*args, **kwargs)

    def cuda(self, *args, **kwargs):
        self.data_preprocessor.cuda(*args, **kwargs)
        return super().cuda(*args, **kwargs)

    def cpu(self, *args, **kwargs):
        self.data_preprocessor.cpu(*args, **kwargs)
        return super().cpu(*args, **kwargs)

    @property
    def device(self):
        return self.data_preprocessor.device
