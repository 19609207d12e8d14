"""CLIPSeg (Lueddecke & Ecker, CVPR 2022) through Hugging Face transformers, text-prompted.

CLIPSeg scores one (image, prompt) pair at a time: a binary mask logit map at 352 x 352. For K
classes the annotator runs the frozen CLIP vision encoder once per image and the small decoder
once per class prompt (batched), upsamples the K logit maps (bilinear) to the image's original
size and turns them into class probabilities:

- ``activation='softmax'`` (default): softmax over the K classes of ``logit / temperature``.
  Each pixel's K values sum to 1: the right model when the class list covers the whole image
  (VOC with its background class, ADE20K, CamVid), and what the conformal calibrator expects.
- ``activation='sigmoid'``: each class's own sigmoid, CLIPSeg's native binary reading. Values
  do not sum to 1 (calibrate with ``ConformalCalibrator(check_probs=False)``).

Background (``background_index`` set, e.g. 0 on VOC): a prompt like "a photo of a background"
means little to CLIP, so by default (``background='constant'``) the background class gets no
prompt and a constant logit ``background_logit`` (0: a pixel is background unless some class's
mask logit is positive, the usual 0.5-threshold reading of CLIPSeg's masks). With
``background='prompt'`` it is prompted like every other class (``class_prompts`` can give it a
better text, e.g. 'sky, wall, floor and ground').
"""
import numpy as np
import torch
import torch.nn.functional as F

from .base import BaseAnnotator
from .registry import ANNOTATORS

ACTIVATIONS = ('softmax', 'sigmoid')
BACKGROUNDS = ('constant', 'prompt')


@ANNOTATORS.register_module()
class CLIPSegAnnotator(BaseAnnotator):
    """Text-prompted CLIPSeg annotator.

    Args:
        pretrained: a Hugging Face model id or a local folder holding both the
            ``CLIPSegForImageSegmentation`` weights and its ``CLIPSegProcessor`` (default
            'CIDAS/clipseg-rd64-refined', downloaded on first use where there is internet).
        device: torch device (default: 'cuda' when available).
        prompt_template: prompt of a class, formatted with its name.
        class_prompts: optional {class name: prompt} overriding the template.
        activation: ``'softmax'`` (default) or ``'sigmoid'`` (module docstring).
        temperature: softmax temperature.
        background_index: index of the background class, or None (no special handling).
        background: ``'constant'`` (default) or ``'prompt'``, used when ``background_index`` is
            set.
        background_logit: the background's constant logit.
        prompt_batch: prompts decoded per forward pass.
        local_files_only: never try to download (``from_pretrained`` option).
    """

    def __init__(self, pretrained='CIDAS/clipseg-rd64-refined', device=None,
                 prompt_template='a photo of a {}.', class_prompts=None, activation='softmax',
                 temperature=1.0, background_index=None, background='constant',
                 background_logit=0.0, prompt_batch=32, local_files_only=False):
        if activation not in ACTIVATIONS:
            raise ValueError(f'activation must be one of {ACTIVATIONS}, got {activation!r}')
        if background not in BACKGROUNDS:
            raise ValueError(f'background must be one of {BACKGROUNDS}, got {background!r}')
        if not temperature > 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.pretrained = str(pretrained)
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.prompt_template = prompt_template
        self.class_prompts = dict(class_prompts or {})
        self.activation = activation
        self.temperature = float(temperature)
        self.background_index = background_index
        self.background = background
        self.background_logit = float(background_logit)
        self.prompt_batch = int(prompt_batch)
        self.model, self.processor = self._load(local_files_only)
        self._text = (None, None)

    def _load(self, local_files_only):
        try:
            from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor
        except ImportError as e:
            raise ImportError('CLIPSegAnnotator needs Hugging Face transformers: pip install -r '
                              'requirements/annotators.txt') from e
        try:
            model = CLIPSegForImageSegmentation.from_pretrained(
                self.pretrained, local_files_only=local_files_only)
            processor = CLIPSegProcessor.from_pretrained(
                self.pretrained, local_files_only=local_files_only)
        except OSError as e:
            raise OSError(
                f'could not load CLIPSeg from {self.pretrained!r} ({e}). Without internet, '
                'download the model once on a machine that has it (e.g. '
                'CLIPSegForImageSegmentation.from_pretrained(...).save_pretrained(DIR) and the '
                'same for CLIPSegProcessor) and pass pretrained=DIR.') from e
        return model.eval().to(self.device), processor

    def __repr__(self):
        return (f'{type(self).__name__}(pretrained={self.pretrained!r}, '
                f'activation={self.activation!r}, background_index={self.background_index})')

    def prompts(self, class_names):
        """The text prompt of each class (None for a constant-logit background)."""
        out = []
        for k, c in enumerate(class_names):
            if k == self.background_index and self.background == 'constant':
                out.append(None)
            else:
                out.append(self.class_prompts.get(c, self.prompt_template.format(c)))
        return out

    @torch.no_grad()
    def _text_embeddings(self, prompts):
        texts = [p for p in prompts if p is not None]
        if self._text[0] != texts:
            tokens = self.processor.tokenizer(texts, padding=True, return_tensors='pt')
            emb = self.model.get_conditional_embeddings(
                batch_size=len(texts), input_ids=tokens['input_ids'].to(self.device),
                attention_mask=tokens['attention_mask'].to(self.device))
            self._text = (texts, emb)
        return self._text[1]

    @torch.no_grad()
    def logits(self, image, class_names):
        """(K, 352, 352) CLIPSeg logits (at the model's input size; a constant for a
        constant-logit background)."""
        image = self.check_image(image)
        prompts = self.prompts(self.check_class_names(class_names))
        rgb = np.ascontiguousarray(image[..., ::-1])
        pixels = self.processor.image_processor(images=rgb, return_tensors='pt')['pixel_values']
        pixels = pixels.to(self.device)
        # the frozen CLIP encoder once per image; its activations feed every prompt's decoder
        vision = self.model.clip.vision_model(pixels, output_hidden_states=True)
        acts = [vision.hidden_states[i + 1] for i in self.model.extract_layers]
        text = self._text_embeddings(prompts) if any(p is not None for p in prompts) else None
        maps = []
        for start in range(0, 0 if text is None else len(text), self.prompt_batch):
            cond = text[start:start + self.prompt_batch]
            batch_acts = [a.expand(len(cond), -1, -1) for a in acts]
            logits = self.model.decoder(batch_acts, cond).logits
            maps.append(logits.reshape(len(cond), *logits.shape[-2:]))
        size = maps[0].shape[-2:] if maps else pixels.shape[-2:]
        prompted = iter(torch.cat(maps)) if maps else iter(())
        out = [next(prompted) if p is not None else torch.full(
            size, self.background_logit, device=self.device) for p in prompts]
        return torch.stack(out)

    @torch.no_grad()
    def annotate(self, image, class_names, *, img_path=None, gt_seg_map=None):
        image = self.check_image(image)
        class_names = self.check_class_names(class_names)
        logits = self.logits(image, class_names).float()
        logits = F.interpolate(logits[None], size=image.shape[:2], mode='bilinear',
                               align_corners=False)[0]
        if self.activation == 'softmax':
            probs = (logits / self.temperature).softmax(0)
        else:
            probs = logits.sigmoid()
        return self.check_output(probs, image, class_names)
