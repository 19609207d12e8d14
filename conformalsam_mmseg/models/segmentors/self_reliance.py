"""ConformalSAM's Stage II when it runs alone: the model labels the unlabeled images itself."""
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from .semi_base import SemiSegmentor


@MODELS.register_module()
class SelfReliance(SemiSegmentor):
    """Self-reliance training: L = (1 - lambda(t)) L_s + lambda(t) L_u.

    L_s is the cross-entropy on the labeled images ('sup'); L_u the cross-entropy on the
    unlabeled weak views ('unsup_weak') against the model's own prediction, taken in eval
    mode without gradient and kept where its confidence reaches ``conf_thresh`` (other and
    padded pixels are ignored). lambda(t) comes from a ``DynamicLossWeighter``, which needs
    the current iteration: ``SelfRelianceHook`` sets ``cur_iter`` before every step.

    semi_train_cfg: conf_thresh=0.95, weighter=dict(type='DynamicLossWeighter', ...).
    """

    def __init__(self, segmentor, semi_train_cfg=None, **kwargs):
        cfg = dict(conf_thresh=0.95, weighter=dict(type='DynamicLossWeighter'))
        cfg.update(semi_train_cfg or {})
        super().__init__(segmentor, semi_train_cfg=cfg, **kwargs)
        self.weighter = MODELS.build(cfg['weighter'])
        self.cur_iter = 0

    def loss(self, multi_batch_inputs, multi_batch_data_samples):
        img_x = multi_batch_inputs['sup']
        mask_x = self.stack_seg_maps(multi_batch_data_samples['sup'])
        img_u_w = multi_batch_inputs['unsup_weak']
        ignore_mask = self.stack_seg_maps(multi_batch_data_samples['unsup_weak'])

        with torch.no_grad():
            self.student.eval()
            conf_u_w, mask_u_w = self.logits(self.student, img_u_w).softmax(dim=1).max(dim=1)
        self.student.train()
        kept = (conf_u_w >= self.semi_train_cfg['conf_thresh']) & (ignore_mask != 255)
        pseudo_label = torch.where(kept, mask_u_w, torch.full_like(mask_u_w, 255))

        pred_x, pred_u_w = self.logits(self.student, torch.cat((img_x, img_u_w))).split(
            [img_x.shape[0], img_u_w.shape[0]])
        loss_s = F.cross_entropy(pred_x, mask_x, ignore_index=255)
        # A batch with no confident pixel contributes no unlabeled gradient (not NaN).
        loss_u = (F.cross_entropy(pred_u_w, pseudo_label, ignore_index=255)
                  if kept.any() else pred_u_w.sum() * 0)
        reliability = kept.sum() / (ignore_mask != 255).sum().clamp(min=1)
        weighted_s, weighted_u = self.weighter(loss_s, loss_u, self.cur_iter, reliability)
        return dict(sup_loss_s=weighted_s, unsup_loss_u=weighted_u,
                    unsup_kept_ratio=reliability.detach(),
                    stage2_lambda=self.weighter.last_lambda.clone())
