"""SEEM v1.0's ``build_model`` and the parts of the model ``SEEMAnnotator`` touches."""
import math

import torch
import torch.nn.functional as F
from torch import nn


class LangEncoder:
    def __init__(self):
        self.num_prompts = 0

    def get_text_embeddings(self, prompts, is_eval=True):
        assert is_eval and all(isinstance(p, str) for p in prompts)
        self.num_prompts = len(prompts)


class Predictor:
    def __init__(self):
        self.lang_encoder = LangEncoder()


class SemSegHead(nn.Module):
    """Q = K + 1 queries (the class prompts and 'no object'); query q proposes prompt q, with a
    mask that prefers bright pixels for low q and dark ones for high q."""

    def __init__(self):
        super().__init__()
        self.predictor = Predictor()
        self.num_classes = 0

    def forward(self, features):
        queries = self.predictor.lang_encoder.num_prompts
        assert queries == self.num_classes + 1, 'the class prompts were not set'
        pred_logits = 4 * torch.eye(queries)[None]
        brightness = features.mean(1, keepdim=True) - 0.5
        slope = torch.linspace(8, -8, queries)[None, :, None, None]
        return dict(pred_logits=pred_logits, pred_masks=brightness * slope)


class Backbone(nn.Module):
    def forward(self, images):
        return F.avg_pool2d(images, 4)


class GeneralizedSEEM(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.sem_seg_head = SemSegHead()
        self.semantic_on = False

    def evaluate(self, batched_inputs):
        assert self.semantic_on
        (item,) = batched_inputs
        image = item['image'].float() / 255
        h, w = image.shape[-2:]
        padded = image.new_zeros(3, 32 * math.ceil(h / 32), 32 * math.ceil(w / 32))
        padded[:, :h, :w] = image
        return self.sem_seg_head(self.backbone(padded[None]))


def build_model(opt):
    assert opt['distributed_initialised']
    return GeneralizedSEEM()
