"""UniMatch (Yang et al., CVPR 2023): unified dual-stream perturbations, weak-to-strong consistency."""
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

from ..utils import cutmix_boxes, levels_read_by
from .semi_base import SemiSegmentor

MIX_SOURCES = ('same_images', 'other_images')


@MODELS.register_module()
class UniMatch(SemiSegmentor):
    """UniMatch, step by step as the authors' ``unimatch.py``.

    Per iteration the batch holds B labeled images ('sup') and 2B unlabeled samples, each with a
    weak view and two strong views ('unsup_weak', 'unsup_strong1', 'unsup_strong2'). The first B
    unlabeled samples are the batch u, the last B the CutMix source ("mix") batch. As in the
    authors' loop, which reads the unlabeled loader twice in the same order, mix sample i is the
    image of u sample i, loaded and augmented again (``MultiSourceSampler`` with
    ``source_repeats=[1, 2]``).

    1. no grad, eval mode: pseudo-label the mix batch (conf_u_w_mix, mask_u_w_mix);
    2. paste the mix batch's strong views into img_u_s1 / img_u_s2 inside one CutMix box each;
    3. train mode: forward cat(img_x, img_u_w) and, decoded by the same head, its features
       with Dropout2d(0.5) on the levels the head reads (c1 and c4 for DeepLabV3+; pred_u_w_fp,
       kept for the weak view only);
    4. forward cat(img_u_s1, img_u_s2);
    5. pseudo-labels = argmax / max softmax of the detached weak prediction, with the mix
       batch's label, confidence and ignore mask inside each box;
    6. loss = (loss_x + 0.25 loss_s1 + 0.25 loss_s2 + 0.5 loss_fp) / 2, each unsupervised CE
       masked by conf >= conf_thresh and not-ignored, divided by the not-ignored pixel count.

    semi_train_cfg keys (defaults are the authors'): conf_thresh=0.95, fp_dropout=0.5,
    cutmix_prob=0.5, cutmix_area=(0.02, 0.4), cutmix_ratio=(0.3, 1/0.3),
    loss_weights=dict(x=0.5, s1=0.125, s2=0.125, fp=0.25) (the formula above, expanded), and

    * fp_levels: the backbone levels Dropout2d perturbs. 'head' (default, the authors'): those
      the decode head reads (``in_index`` and ``c1_in_index``: c1 and c4 for DeepLabV3+),
      perturbed in increasing order, so c1's mask is drawn before c4's as in the authors'
      model; 'all': every level; or a list of level indices.
    * sup_loss: the labeled loss; None (default): the plain cross-entropy (the authors' VOC,
      ADE20K and COCO recipes); ``dict(type='ProbOhem', thresh=0.7, min_kept=N)``: their
      Cityscapes recipe's OHEM (``prob_ohem_cross_entropy``; they use min_kept 200000 for two
      801 px crops per GPU, 15.6% of the batch's pixels).
    * mix_source: 'same_images' (default, the authors'): mix sample i must show the image of
      u sample i; where the samples carry ``img_path``, a batch that does not is refused.
      'other_images': any unlabeled images (``MultiSourceSampler`` without source_repeats).
    """

    def __init__(self, segmentor, semi_train_cfg=None, **kwargs):
        cfg = dict(conf_thresh=0.95, fp_dropout=0.5, cutmix_prob=0.5, cutmix_area=(0.02, 0.4),
                   cutmix_ratio=(0.3, 1 / 0.3),
                   loss_weights=dict(x=0.5, s1=0.125, s2=0.125, fp=0.25),
                   fp_levels='head', mix_source='same_images', sup_loss=None)
        cfg.update(semi_train_cfg or {})
        if cfg['mix_source'] not in MIX_SOURCES:
            raise ValueError(f"UniMatch: semi_train_cfg.mix_source={cfg['mix_source']!r} is "
                             f'not one of {MIX_SOURCES}.')
        fp_levels = cfg['fp_levels']
        if not (fp_levels in ('head', 'all') or (
                isinstance(fp_levels, (list, tuple)) and fp_levels
                and all(isinstance(i, int) for i in fp_levels))):
            raise ValueError(f'UniMatch: semi_train_cfg.fp_levels={fp_levels!r}; use \'head\' '
                             "(the levels the decode head reads), 'all', or a list of backbone "
                             'level indices such as [0, 3].')
        super().__init__(segmentor, semi_train_cfg=cfg, **kwargs)
        self.feature_perturbation = nn.Dropout2d(cfg['fp_dropout'])

    def perturbed_levels(self, num_levels):
        """Sorted indices of the backbone levels that feature perturbation drops out."""
        fp_levels = self.semi_train_cfg['fp_levels']
        if fp_levels == 'all':
            return list(range(num_levels))
        if fp_levels == 'head':
            return levels_read_by(self.student.decode_head, num_levels)
        bad = [i for i in fp_levels if not -num_levels <= i < num_levels]
        if bad:
            raise ValueError(f'UniMatch: semi_train_cfg.fp_levels names levels {bad}, but the '
                             f'backbone gives {num_levels}.')
        return sorted({i % num_levels for i in fp_levels})

    def forward_with_fp(self, inputs):
        """Logits of ``inputs`` and of the same features after Dropout2d, decoded together.

        Each level in ``perturbed_levels`` becomes cat(f, Dropout2d(f)), one dropout draw per
        level in increasing level order; another level the head reads becomes cat(f, f), and a
        level it does not read is passed on unchanged.
        """
        feats = self.student.extract_feat(inputs)
        perturbed = self.perturbed_levels(len(feats))
        read = levels_read_by(self.student.decode_head, len(feats))
        feats = [torch.cat((f, self.feature_perturbation(f))) if i in perturbed
                 else torch.cat((f, f)) if i in read else f
                 for i, f in enumerate(feats)]
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
        if cfg['mix_source'] == 'same_images':
            self.check_mix_shows_u(multi_batch_data_samples['unsup_weak'])
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

        loss_x = self.sup_loss(pred_x, mask_x)
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
    def check_mix_shows_u(data_samples):
        """Refuse a batch whose mix half does not show the u half's images, in order."""
        paths = [s.metainfo.get('img_path') for s in data_samples]
        if None in paths:
            return  # samples without a path (built in code): nothing to check
        u, mix = paths[:len(paths) // 2], paths[len(paths) // 2:]
        if u != mix:
            u, mix = [osp.basename(p) for p in u], [osp.basename(p) for p in mix]
            raise ValueError(
                'UniMatch (semi_train_cfg.mix_source=\'same_images\', the authors\') pastes each '
                'unlabeled image with another view of the same image, but the CutMix source '
                f'half of the batch shows other images (u: {u[:2]}..., mix: {mix[:2]}...). Set '
                'train_dataloader.sampler.source_repeats=[1, 2] (MultiSourceSampler), or '
                "semi_train_cfg.mix_source='other_images' to mix with other images.")

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
