"""UniMatch (Yang et al., CVPR 2023): unified dual-stream perturbations, weak-to-strong consistency."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from ..utils import cutmix_boxes
from .semi_base import SemiSegmentor


@MODELS.register_module()
class UniMatch(SemiSegmentor):
    """UniMatch, step by step as the authors' ``unimatch.py``.

    Per iteration the batch holds B labeled images ('sup') and 2B unlabeled images, each with a
    weak view and two strong views ('unsup_weak', 'unsup_strong1', 'unsup_strong2'). The first B
    unlabeled images are the batch u, the last B the CutMix source ("mix") batch.

    1. no grad, eval mode: pseudo-label the mix batch (conf_u_w_mix, mask_u_w_mix);
    2. paste the mix batch's strong views into img_u_s1 / img_u_s2 inside one CutMix box each;
    3. train mode: forward cat(img_x, img_u_w) and, decoded by the same head, its features
       perturbed by Dropout2d(0.5) (pred_u_w_fp, kept for the weak view only);
    4. forward cat(img_u_s1, img_u_s2);
    5. pseudo-labels = argmax / max softmax of the detached weak prediction, with the mix
       batch's label, confidence and ignore mask inside each box;
    6. loss = (loss_x + 0.25 loss_s1 + 0.25 loss_s2 + 0.5 loss_fp) / 2, each unsupervised CE
       masked by conf >= conf_thresh and not-ignored, divided by the not-ignored pixel count.

    semi_train_cfg keys (defaults are the authors'): conf_thresh=0.95, fp_dropout=0.5,
    cutmix_prob=0.5, cutmix_area=(0.02, 0.4), cutmix_ratio=(0.3, 1/0.3),
    loss_weights=dict(x=0.5, s1=0.125, s2=0.125, fp=0.25) (the formula above, expanded).
    """

    def __init__(self, segmentor, semi_train_cfg=None, **kwargs):
        cfg = dict(conf_thresh=0.95, fp_dropout=0.5, cutmix_prob=0.5, cutmix_area=(0.02, 0.4),
                   cutmix_ratio=(0.3, 1 / 0.3),
                   loss_weights=dict(x=0.5, s1=0.125, s2=0.125, fp=0.25))
        cfg.update(semi_train_cfg or {})
        super().__init__(segmentor, semi_train_cfg=cfg, **kwargs)
        self.feature_perturbation = nn.Dropout2d(cfg['fp_dropout'])

    def forward_with_fp(self, inputs):
        """Logits of ``inputs`` and of the same features after Dropout2d, decoded together.

        Every backbone level is perturbed; DeepLabV3+'s head reads only c1 and c4, so for it
        this is exactly UniMatch's perturbation of the low- and high-level features.
        """
        feats = self.student.extract_feat(inputs)
        feats = [torch.cat((f, self.feature_perturbation(f))) for f in feats]
        preds, preds_fp = self.logits(self.student, inputs, feats).chunk(2)
        return preds, preds_fp

    def unsup_loss(self, pred, pseudo_label, conf, ignore_mask):
        """UniMatch's criterion_u: per-pixel CE kept where conf >= threshold and not ignored,
        summed and divided by the number of not-ignored pixels."""
        valid = ignore_mask != 255
        loss = F.cross_entropy(pred, pseudo_label, reduction='none')
        loss = loss * ((conf >= self.semi_train_cfg['conf_thresh']) & valid)
        return loss.sum() / valid.sum().clamp(min=1)

    def loss(self, multi_batch_inputs, multi_batch_data_samples):
        cfg = self.semi_train_cfg
        img_x = multi_batch_inputs['sup']
        mask_x = self.stack_seg_maps(multi_batch_data_samples['sup'])
        img_u_w, img_u_w_mix = self._split_u(multi_batch_inputs['unsup_weak'])
        img_u_s1, img_u_s1_mix = self._split_u(multi_batch_inputs['unsup_strong1'])
        img_u_s2, img_u_s2_mix = self._split_u(multi_batch_inputs['unsup_strong2'])
        ignore_mask, ignore_mask_mix = self._split_u(
            self.stack_seg_maps(multi_batch_data_samples['unsup_weak']))
        num_lb, num_ulb = img_x.shape[0], img_u_w.shape[0]
        box_kw = dict(p=cfg['cutmix_prob'], area=cfg['cutmix_area'], ratio=cfg['cutmix_ratio'])
        cutmix_box1 = cutmix_boxes(num_ulb, *img_u_w.shape[2:], device=img_u_w.device, **box_kw)
        cutmix_box2 = cutmix_boxes(num_ulb, *img_u_w.shape[2:], device=img_u_w.device, **box_kw)

        with torch.no_grad():
            self.student.eval()
            pred_u_w_mix = self.logits(self.student, img_u_w_mix).detach()
            conf_u_w_mix, mask_u_w_mix = pred_u_w_mix.softmax(dim=1).max(dim=1)
        self.student.train()

        img_u_s1 = torch.where(cutmix_box1.unsqueeze(1), img_u_s1_mix, img_u_s1)
        img_u_s2 = torch.where(cutmix_box2.unsqueeze(1), img_u_s2_mix, img_u_s2)

        preds, preds_fp = self.forward_with_fp(torch.cat((img_x, img_u_w)))
        pred_x, pred_u_w = preds.split([num_lb, num_ulb])
        pred_u_w_fp = preds_fp[num_lb:]
        pred_u_s1, pred_u_s2 = self.logits(self.student, torch.cat((img_u_s1, img_u_s2))).chunk(2)

        pred_u_w = pred_u_w.detach()
        conf_u_w, mask_u_w = pred_u_w.softmax(dim=1).max(dim=1)
        mask_u_w_cutmixed1, conf_u_w_cutmixed1, ignore_mask_cutmixed1 = self.paste(
            cutmix_box1, (mask_u_w, conf_u_w, ignore_mask),
            (mask_u_w_mix, conf_u_w_mix, ignore_mask_mix))
        mask_u_w_cutmixed2, conf_u_w_cutmixed2, ignore_mask_cutmixed2 = self.paste(
            cutmix_box2, (mask_u_w, conf_u_w, ignore_mask),
            (mask_u_w_mix, conf_u_w_mix, ignore_mask_mix))

        loss_x = F.cross_entropy(pred_x, mask_x, ignore_index=self.ignore_index)
        loss_s1 = self.unsup_loss(pred_u_s1, mask_u_w_cutmixed1, conf_u_w_cutmixed1,
                                  ignore_mask_cutmixed1)
        loss_s2 = self.unsup_loss(pred_u_s2, mask_u_w_cutmixed2, conf_u_w_cutmixed2,
                                  ignore_mask_cutmixed2)
        loss_fp = self.unsup_loss(pred_u_w_fp, mask_u_w, conf_u_w, ignore_mask)

        w = cfg['loss_weights']
        valid = ignore_mask != 255
        mask_ratio = ((conf_u_w >= cfg['conf_thresh']) & valid).sum() / valid.sum().clamp(min=1)
        return dict(sup_loss_x=w['x'] * loss_x,
                    unsup_loss_s1=w['s1'] * loss_s1,
                    unsup_loss_s2=w['s2'] * loss_s2,
                    unsup_loss_fp=w['fp'] * loss_fp,
                    unsup_mask_ratio=mask_ratio.detach())

    @staticmethod
    def paste(box, targets, sources):
        """Inside ``box``, take each source tensor's values instead of the target's."""
        return tuple(torch.where(box, s, t) for t, s in zip(targets, sources))

    @staticmethod
    def _split_u(batch):
        if batch.shape[0] % 2:
            raise ValueError(
                f'UniMatch needs an even number of unlabeled samples per batch (the batch u and '
                f'an equally large CutMix source), got {batch.shape[0]}; set the sampler\'s '
                'source_ratio to [B, 2 * B].')
        return batch.chunk(2)
