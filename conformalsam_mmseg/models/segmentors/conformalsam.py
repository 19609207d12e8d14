"""ConformalSAM (ICCV 2025): a calibrated foundation-model annotator, then self-reliance."""
import torch
import torch.nn.functional as F
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS

from .semi_base import check_network_options


def check_switch(at):
    """``self_reliance_at``: None, an iteration >= 0 (int), or a fraction in (0, 1)."""
    if at is None:
        return
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise TypeError(f'ConformalSAM.self_reliance_at must be None, an iteration or a '
                        f'fraction of max_iters, got {at!r}')
    if isinstance(at, float) and not 0 < at < 1:
        raise ValueError(f'ConformalSAM.self_reliance_at: a fraction of max_iters must lie in '
                         f'(0, 1), got {at}')
    if isinstance(at, int) and at < 0:
        raise ValueError(f'ConformalSAM.self_reliance_at must be >= 0, got {at}')


@MODELS.register_module()
class ConformalSAM(BaseSegmentor):
    """ConformalSAM around a ``host`` semi-supervised segmentor.

    Stage I: L = w_s L_s + w_u L_u, where L_s is the cross-entropy on the labeled images
    ('sup') and L_u the cross-entropy on the unlabeled weak views ('unsup_weak') against the
    annotator's labels filtered by conformal prediction (``pseudo_label_head``, a
    ``AnnotatorPseudoLabelHead``; rejected pixels are ignored).

    Stage II (self-reliance): the annotator is dropped and the host trains as it would alone:
    ``SelfReliance`` for ConformalSAM by itself (the model's own confident labels weighed by the
    dynamic loss weighting), or UniMatch / AllSpark for the paper's ConformalSAM(host).

    ``stage`` is a buffer, so checkpoints carry it and a run resumed after the switch stays in
    Stage II; ``SelfRelianceHook`` switches it. The host's network predicts in both stages.

    Args:
        host (dict): a ``SemiSegmentor`` config (``SelfReliance``, ``UniMatch``, ``AllSpark``, ...).
        pseudo_label_head (dict): ``AnnotatorPseudoLabelHead`` config: the filter and its
            options (``filter``, ``alpha``, ``mode``, ``rule``, ``background_index``, ...),
            which ``ConformalCalibrationHook`` reads.
        self_reliance_at (int | float | None): Stage II from this iteration (int) or fraction
            of ``max_iters`` (float in (0, 1); default 0.75, the paper's 60 of 80 epochs on VOC
            and 30 of 40 on ADE20K); None stays in Stage I. ``SelfRelianceHook`` reads it.
        stage_one_weights (dict): w_s and w_u as ``dict(sup=1.0, unsup=1.0)``.
    """

    def __init__(self, host, pseudo_label_head, self_reliance_at=0.75,
                 stage_one_weights=dict(sup=1.0, unsup=1.0), data_preprocessor=None,
                 init_cfg=None, pretrained=None, train_cfg=None):
        # ``data_preprocessor`` is accepted because mmengine's Runner passes a config's
        # top-level one to every model; batches are prepared by the host's instead.
        # ``pretrained`` / ``train_cfg``: set to None by ``mmseg.apis.init_model``.
        check_network_options('ConformalSAM', pretrained=pretrained, train_cfg=train_cfg)
        check_switch(self_reliance_at)
        super().__init__(init_cfg=init_cfg)
        self.self_reliance_at = self_reliance_at
        self.host = MODELS.build(host)
        # Batches are prepared as the host expects them.
        self.data_preprocessor = self.host.data_preprocessor
        self.pseudo_label_head = MODELS.build(pseudo_label_head)
        if self.pseudo_label_head.num_classes != self.host.num_classes:
            raise ValueError(
                f'pseudo_label_head has {self.pseudo_label_head.num_classes} classes and the '
                f'segmentor {self.host.num_classes}; they must label the same classes.')
        self.stage_one_weights = dict(stage_one_weights)
        self.register_buffer('stage', torch.tensor(1, dtype=torch.long))

    # --- stages --------------------------------------------------------------------------
    def switch_iter(self, max_iters):
        """The first Stage II iteration (0-based), or None without self-reliance."""
        at = self.self_reliance_at
        if at is None:
            return None
        return int(round(at * max_iters)) if isinstance(at, float) else at

    @property
    def in_self_reliance(self):
        return int(self.stage) == 2

    def enter_self_reliance(self, cur_iter, max_iters):
        self.stage.fill_(2)
        weighter = getattr(self.host, 'weighter', None)
        if weighter is not None and not weighter.started:
            weighter.begin(cur_iter, max_iters)

    def stage_one_log_keys(self, names):
        """Of the logged ``names``, those that only Stage I computes (its two losses and the
        pseudo-label head's statistics): the self-reliance hook stops logging them at the
        switch, so that Stage II lines show no stale Stage I values."""
        prefix = self.pseudo_label_head.stats_prefix
        return [n for n in names
                if n in ('sup_loss_s', 'unsup_loss_annotator') or n.startswith(prefix)]

    def set_iter(self, cur_iter):
        self.host.cur_iter = cur_iter

    # --- training ------------------------------------------------------------------------
    def loss(self, multi_batch_inputs, multi_batch_data_samples):
        if self.in_self_reliance:
            return self.host.loss(multi_batch_inputs, multi_batch_data_samples)
        return self.calibrated_annotator_loss(multi_batch_inputs, multi_batch_data_samples)

    def calibrated_annotator_loss(self, multi_batch_inputs, multi_batch_data_samples):
        host, student = self.host, self.host.student
        img_x = multi_batch_inputs['sup']
        mask_x = host.stack_seg_maps(multi_batch_data_samples['sup'])
        img_u_w = multi_batch_inputs['unsup_weak']
        pseudo_label, stats = self.pseudo_label_head(multi_batch_data_samples['unsup_weak'])

        pred_x, pred_u_w = host.logits(student, torch.cat((img_x, img_u_w))).split(
            [img_x.shape[0], img_u_w.shape[0]])
        loss_s = F.cross_entropy(pred_x, mask_x, ignore_index=255)
        # A batch where every annotator label was rejected gives no unlabeled gradient.
        kept = pseudo_label != 255
        loss_u = (F.cross_entropy(pred_u_w, pseudo_label, ignore_index=255)
                  if kept.any() else pred_u_w.sum() * 0)
        losses = dict(sup_loss_s=self.stage_one_weights['sup'] * loss_s,
                      unsup_loss_annotator=self.stage_one_weights['unsup'] * loss_u)
        losses.update({k: torch.tensor(float(v)) for k, v in stats.items()})
        return losses

    # --- prediction: the host's network ----------------------------------------------------
    def extract_feat(self, inputs):
        return self.host.extract_feat(inputs)

    def encode_decode(self, inputs, batch_data_samples):
        return self.host.encode_decode(inputs, batch_data_samples)

    def predict(self, inputs, data_samples=None):
        return self.host.predict(inputs, data_samples)

    def _forward(self, inputs, data_samples=None):
        return self.host._forward(inputs, data_samples)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        # A host's or a plain segmentor's checkpoint initialises the host.
        own = [k for k in state_dict if k.startswith(prefix)]
        ours = ('host.', 'pseudo_label_head.', 'stage')
        if own and not any(k[len(prefix):].startswith(ours) for k in own):
            for k in own:
                state_dict[f'{prefix}host.{k[len(prefix):]}'] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)
