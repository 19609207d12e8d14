"""The base of every semi-supervised segmentor, in the shape of MMDetection 3.x's SemiBaseDetector."""
import copy

import torch
import torch.nn.functional as F
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS

from ..losses import prob_ohem_cross_entropy
from .plain_cross_entropy import check_plain_cross_entropy


def rename_loss_dict(prefix, losses):
    """``{'loss_ce': x}`` -> ``{'sup_loss_ce': x}``: one log line tells which branch a loss is from."""
    return {prefix + name: value for name, value in losses.items()}


def reweight_loss_dict(losses, weight):
    """Scale every loss term (keys containing 'loss'); statistics are left as they are."""
    return {name: value * weight if 'loss' in name else value
            for name, value in losses.items()}


def check_network_options(model, **options):
    """Refuse a network option (``pretrained``, ``train_cfg``) given to a wrapper model."""
    given = sorted(k for k, v in options.items() if v)
    if given:
        raise ValueError(f'{model} takes no {", ".join(given)}: they belong to the network, '
                         f'e.g. model.segmentor.{given[0]} (model.host.segmentor.{given[0]} '
                         'under ConformalSAM).')


def check_sup_loss(sup_loss, model):
    """``semi_train_cfg.sup_loss``: None or ``dict(type='ProbOhem', thresh, min_kept)``."""
    if sup_loss is not None and (not isinstance(sup_loss, dict)
                                 or sup_loss.get('type') != 'ProbOhem'
                                 or set(sup_loss) - {'type', 'thresh', 'min_kept'}):
        raise ValueError(f'{model}: semi_train_cfg.sup_loss={sup_loss!r}; use None (plain '
                         "cross-entropy) or dict(type='ProbOhem', thresh=0.7, min_kept=N).")


@MODELS.register_module()
class SemiSegmentor(BaseSegmentor):
    """A segmentor (``student``) trained on labeled and unlabeled branches of one batch.

    Subclasses implement ``loss(multi_batch_inputs, multi_batch_data_samples)``, whose two
    arguments are dicts keyed by branch ('sup', 'unsup_weak', 'unsup_strong1', ...) as the
    ``MultiBranchDataPreprocessor`` produces them.

    Args:
        segmentor (dict): config of the network, e.g. an ``EncoderDecoder``. Its own
            ``data_preprocessor`` is not used: batches are prepared by this model's.
        semi_train_cfg (dict): method options. ``ema_teacher=True`` adds a ``teacher`` copy
            of the network, updated by ``MeanTeacherHook``.
        semi_test_cfg (dict): ``predict_on`` = 'student' (default) or 'teacher'.
        data_preprocessor (dict): usually ``MultiBranchDataPreprocessor``.

    The losses are computed by the subclasses as the methods' plain cross-entropy; a decode
    head whose ``loss_decode`` says otherwise (OHEM, class weights, ...) is refused when the
    model is built.

    A plain segmentor checkpoint (keys without 'student.'/'teacher.') loads into both networks,
    so a supervised model can initialise a semi-supervised run.
    """

    def __init__(self, segmentor, semi_train_cfg=None, semi_test_cfg=None,
                 data_preprocessor=None, init_cfg=None, pretrained=None, train_cfg=None):
        # ``pretrained`` and ``train_cfg`` exist so that ``mmseg.apis.init_model``, which sets
        # both to None on every model config, builds semi-supervised models too; they belong
        # to the network (``segmentor``).
        check_network_options(type(self).__name__, pretrained=pretrained, train_cfg=train_cfg)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.semi_train_cfg = dict(semi_train_cfg or {})
        check_sup_loss(self.semi_train_cfg.get('sup_loss'), type(self).__name__)
        self.semi_test_cfg = dict(semi_test_cfg or {})
        self.student = MODELS.build(copy.deepcopy(segmentor))
        check_plain_cross_entropy(self.student.decode_head, type(self).__name__)
        if self.semi_train_cfg.get('ema_teacher', False):
            self.teacher = MODELS.build(copy.deepcopy(segmentor))
            self.teacher.requires_grad_(False)
        predict_on = self.semi_test_cfg.get('predict_on', 'student')
        if predict_on not in ('student', 'teacher') or not hasattr(self, predict_on):
            raise ValueError(
                f"semi_test_cfg.predict_on='{predict_on}' names no network of this model; use "
                "'student', or 'teacher' together with semi_train_cfg.ema_teacher=True.")
        self.predict_on = predict_on

    def init_weights(self):
        super().init_weights()
        if hasattr(self, 'teacher'):
            self.teacher.load_state_dict(self.student.state_dict())

    @property
    def predictor(self):
        return getattr(self, self.predict_on)

    @property
    def align_corners(self):
        return self.student.decode_head.align_corners

    @property
    def ignore_index(self):
        return self.student.decode_head.ignore_index

    @property
    def num_classes(self):
        return self.student.decode_head.num_classes

    # --- the BaseSegmentor interface, delegated to the predicting network -----------------
    def extract_feat(self, inputs):
        return self.predictor.extract_feat(inputs)

    def encode_decode(self, inputs, batch_data_samples):
        return self.predictor.encode_decode(inputs, batch_data_samples)

    def predict(self, inputs, data_samples=None):
        return self.predictor.predict(inputs, data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.predictor._forward(inputs, data_samples)

    # --- helpers for subclasses ------------------------------------------------------------
    def sup_loss(self, pred, mask):
        """The labeled loss: cross-entropy, or with ``semi_train_cfg.sup_loss =
        dict(type='ProbOhem', thresh, min_kept)`` the OHEM of UniMatch's and AllSpark's
        Cityscapes recipes (``prob_ohem_cross_entropy``)."""
        ohem = self.semi_train_cfg.get('sup_loss')
        if ohem is None:
            return F.cross_entropy(pred, mask, ignore_index=self.ignore_index)
        return prob_ohem_cross_entropy(pred, mask, thresh=ohem.get('thresh', 0.7),
                                       min_kept=ohem.get('min_kept', 256),
                                       ignore_index=self.ignore_index)

    @staticmethod
    def stack_seg_maps(data_samples):
        """(B, H, W) long tensor of the samples' ``gt_sem_seg`` (ground truth, or for unlabeled
        samples the dummy map: 0 = image pixel, 255 = padding)."""
        return torch.stack([s.gt_sem_seg.data.squeeze(0) for s in data_samples]).long()

    def logits(self, network, inputs, feats=None):
        """Per-pixel class logits (before softmax) at the resolution of ``inputs``; with
        ``feats`` given, those features are decoded instead of ``inputs``' own."""
        from mmseg.models.utils import resize
        feats = network.extract_feat(inputs) if feats is None else feats
        out = network.decode_head.forward(feats)
        return resize(out, size=inputs.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k[len(prefix):].startswith(('student.', 'teacher.')) for k in own):
            plain = {k[len(prefix):]: state_dict.pop(k) for k in own}
            for net in ('student', 'teacher'):
                if hasattr(self, net):
                    state_dict.update({f'{prefix}{net}.{k}': v for k, v in plain.items()})
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
