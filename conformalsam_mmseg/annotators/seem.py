"""SEEM (Segment Everything Everywhere All at Once) as the annotator, in semantic mode.

SEEM / X-Decoder's semantic inference (``semantic_inference`` in their
``GeneralizedSEEM``/``GeneralizedXdecoder``): the Q mask queries are matched against the text
embeddings of the K class names plus one "no object" prompt, giving ``pred_logits`` (Q, K+1);
each query also predicts a mask, ``pred_masks`` (Q, h, w) logits at 1/4 of the padded input.
Per-class pixel scores are::

    scores[c, y, x] = sum_q softmax(pred_logits[q])[c] * sigmoid(mask[q, y, x]),  c < K

i.e. ``einsum('qc,qhw->chw', softmax(pred_logits, -1)[:, :-1], sigmoid(masks))``, the masks
first upsampled (bilinear, on the logits) to the padded input, cropped to the resized image and
upsampled to the original image size, as SEEM's post-processing does. :func:`seem_semantic_probs`
is that conversion, a pure function.

These scores do not sum to 1 over the classes (nor are they bounded by 1: Q queries add up).
Whether the ConformalSAM paper renormalises them is not stated (REFERENCE.md: unverified), so
``normalize`` chooses:

- ``'sum'`` (default): divide by the per-pixel sum over the K classes, giving a distribution.
  The argmax is unchanged; LAC scores 1 - p are then comparable between pixels, the
  calibrator's sums-to-one check passes and the cache's [0, 1] quantisation applies.
- ``'clamp'``: the raw scores clipped to [0, 1] (cacheable; calibrate with
  ``ConformalCalibrator(check_probs=False)``).
- ``'none'``: the raw scores (may exceed 1; cannot be cached).
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

from .base import BaseAnnotator
from .registry import ANNOTATORS

NORMALIZE = ('sum', 'clamp', 'none')

SEEM_INSTALL_HELP = (
    'SEEMAnnotator drives the authors\' SEEM code, which is not importable here ({error}). '
    'To use it: (1) clone the SEEM repository (UX-Decoder/Segment-Everything-Everywhere-All-At-'
    'Once on GitHub, v1.0) and install its requirements as its README says (detectron2 '
    'included); (2) download a SEEM checkpoint (e.g. seem_focall_v1.pt) and note the config '
    'that goes with it (e.g. configs/seem/focall_unicl_lang_v1.yaml); (3) pass '
    'repo=<the clone>, config_file=<the yaml>, checkpoint=<the .pt>. Without SEEM, '
    'CLIPSegAnnotator (Hugging Face transformers) or a PrecomputedAnnotator cache written '
    'elsewhere can be used instead.')


def seem_semantic_probs(pred_logits, pred_masks, image_size, *, padded_size=None,
                        valid_size=None, normalize='sum', eps=1e-6):
    """Per-class pixel probabilities (K, H, W) from SEEM's outputs for one image.

    Args:
        pred_logits: (Q, K+1) class logits of the Q queries; the last column is "no object".
        pred_masks: (Q, h, w) mask logits at low resolution.
        image_size: (H, W) of the original image: the output size.
        padded_size: (Hp, Wp) of the padded network input; the masks are first upsampled to it
            and cropped to ``valid_size`` (the resized image inside the padding). When None the
            masks are taken to cover exactly the image and are upsampled to it directly.
        valid_size: (h', w') of the resized image inside ``padded_size`` (default: all of it).
        normalize: ``'sum'`` (default), ``'clamp'`` or ``'none'`` (module docstring).
        eps: floor of the per-pixel sum for ``'sum'`` (a pixel with all scores ~0 stays ~0).

    Returns:
        float32 (K, H, W) tensor on the device of the inputs.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f'normalize must be one of {NORMALIZE}, got {normalize!r}')
    pred_logits = torch.as_tensor(pred_logits)
    pred_masks = torch.as_tensor(pred_masks)
    if pred_logits.dim() != 2 or pred_logits.shape[1] < 2:
        raise ValueError(f'pred_logits must be (Q, K+1), got {tuple(pred_logits.shape)}')
    if pred_masks.dim() != 3 or pred_masks.shape[0] != pred_logits.shape[0]:
        raise ValueError(f'pred_masks must be (Q, h, w) with the Q of pred_logits '
                         f'{tuple(pred_logits.shape)}, got {tuple(pred_masks.shape)}')
    masks = pred_masks.float()[None]
    if padded_size is not None:
        masks = F.interpolate(masks, size=tuple(padded_size), mode='bilinear',
                              align_corners=False)
        if valid_size is not None:
            masks = masks[..., :valid_size[0], :valid_size[1]]
    masks = F.interpolate(masks, size=tuple(image_size), mode='bilinear',
                          align_corners=False)[0]
    mask_cls = pred_logits.float().softmax(-1)[:, :-1]
    scores = torch.einsum('qc,qhw->chw', mask_cls, masks.sigmoid())
    if normalize == 'sum':
        scores = scores / scores.sum(0, keepdim=True).clamp_min(eps)
    elif normalize == 'clamp':
        scores = scores.clamp(0, 1)
    return scores


@ANNOTATORS.register_module()
class SEEMAnnotator(BaseAnnotator):
    """SEEM prompted with the class names, semantic mode (ConformalSAM's annotator).

    Needs the SEEM code base and a checkpoint (see :data:`SEEM_INSTALL_HELP`); this project
    does not ship or install them, and this class was written against SEEM v1.0's interfaces
    (``modeling.build_model``, ``modeling.BaseModel``, ``utils.arguments``,
    ``model.sem_seg_head.predictor.lang_encoder.get_text_embeddings``), which this project's
    tests cannot run. The conversion from SEEM's outputs to probabilities,
    :func:`seem_semantic_probs`, is tested on its own.

    The image is resized (bicubic) so that its short side is ``short_edge`` (512, as SEEM's
    demo), fed as RGB; SEEM's ``pred_logits``/``pred_masks`` are captured from its
    ``sem_seg_head`` and converted at the original size.

    Args:
        config_file: SEEM's yaml config for the checkpoint.
        checkpoint: the SEEM checkpoint (.pt).
        repo: the SEEM clone, added to ``sys.path`` (None: SEEM must already be importable).
        device: torch device (default: 'cuda' when available).
        short_edge: resize target of the short side.
        normalize: ``'sum'`` (default), ``'clamp'`` or ``'none'``: see the module docstring.
        prompt_template: text prompt of a class, ``'{}'`` (the class name, SEEM's usage).
        class_prompts: optional {class name: prompt}, e.g. ``{'background': 'other'}``.
        no_object_prompt: the extra (K+1)-th prompt whose column is dropped ('background' in
            SEEM's code). On VOC, whose class 0 is also called background, give class 0 another
            prompt through ``class_prompts`` if the two should differ.
    """

    def __init__(self, config_file, checkpoint, repo=None, device=None, short_edge=512,
                 normalize='sum', prompt_template='{}', class_prompts=None,
                 no_object_prompt='background'):
        if normalize not in NORMALIZE:
            raise ValueError(f'normalize must be one of {NORMALIZE}, got {normalize!r}')
        self.normalize = normalize
        self.short_edge = int(short_edge)
        self.prompt_template = prompt_template
        self.class_prompts = dict(class_prompts or {})
        self.no_object_prompt = no_object_prompt
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.model = self._build(config_file, checkpoint, repo)
        self._prompts = None

    def _build(self, config_file, checkpoint, repo):
        if repo is not None and str(repo) not in sys.path:
            sys.path.insert(0, str(repo))
        try:
            from modeling import build_model
            from modeling.BaseModel import BaseModel
            from utils.arguments import load_opt_from_config_files
            from utils.distributed import init_distributed
        except ImportError as e:
            raise ImportError(SEEM_INSTALL_HELP.format(error=e)) from e
        opt = init_distributed(load_opt_from_config_files([config_file]))
        model = BaseModel(opt, build_model(opt)).from_pretrained(checkpoint)
        model = model.eval().to(self.device)
        net = model.model
        for flag, value in (('semantic_on', True), ('instance_on', False),
                            ('panoptic_on', False)):
            if hasattr(net, flag):
                setattr(net, flag, value)
        return model

    def prompts(self, class_names):
        return [self.class_prompts.get(c, self.prompt_template.format(c)) for c in class_names]

    def _set_classes(self, class_names):
        prompts = self.prompts(class_names)
        if prompts == self._prompts:
            return
        net = self.model.model
        with torch.no_grad():
            net.sem_seg_head.predictor.lang_encoder.get_text_embeddings(
                prompts + [self.no_object_prompt], is_eval=True)
        net.sem_seg_head.num_classes = len(prompts)
        self._prompts = prompts

    @torch.no_grad()
    def annotate(self, image, class_names, *, img_path=None, gt_seg_map=None):
        from PIL import Image
        image = self.check_image(image)
        class_names = self.check_class_names(class_names)
        self._set_classes(class_names)
        h, w = image.shape[:2]
        scale = self.short_edge / min(h, w)
        size = (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(image[..., ::-1])).resize(
            size, Image.BICUBIC))
        tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).to(self.device)
        net = self.model.model
        captured = {}

        def save_input(module, args):
            captured['padded'] = tuple(args[0].shape[-2:])

        def save_output(module, args, output):
            captured['out'] = output

        hooks = [net.backbone.register_forward_pre_hook(save_input),
                 net.sem_seg_head.register_forward_hook(save_output)]
        try:
            net.evaluate([{'image': tensor, 'height': h, 'width': w}])
        finally:
            for hook in hooks:
                hook.remove()
        if 'out' not in captured or 'padded' not in captured:
            raise RuntimeError('SEEMAnnotator could not capture pred_logits/pred_masks from the '
                               'SEEM model; its interfaces differ from SEEM v1.0\'s')
        out = captured['out']
        probs = seem_semantic_probs(
            out['pred_logits'][0], out['pred_masks'][0], (h, w),
            padded_size=captured['padded'], valid_size=(size[1], size[0]),
            normalize=self.normalize)
        return self.check_output(probs, image, class_names)
