"""UniMatch as its authors wrote it, re-typed from their formulas, to compare ours against.

From github.com/LiheYoung/UniMatch: the DeepLabV3+ head and the forward with feature
perturbation (model/semseg/deeplabv3plus.py), the optimizer's two parameter groups and the body
of one training iteration (unimatch.py). Only the widths are parameters (theirs: ASPP
in_channels // 8, c1 reduced to 48, fusion 256); the backbone is any module returning the
feature list (c1, ..., c4), e.g. a copy of ours. Used by tests/test_unimatch_fidelity.py and
benchmarks/bench_unimatch_step.py.
"""
import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels, out_channels, kernel_size, dilation=1):
    padding = 0 if kernel_size == 1 else dilation
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                                   dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_channels),
                         nn.ReLU(True))


class ASPPPooling(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                 nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                 nn.BatchNorm2d(out_channels),
                                 nn.ReLU(True))

    def forward(self, x):
        h, w = x.shape[-2:]
        return F.interpolate(self.gap(x), (h, w), mode='bilinear', align_corners=True)


class ASPPModule(nn.Module):
    """b0 = 1x1, b1..b3 = 3x3 atrous, b4 = image pooling; cat in that order, project."""

    def __init__(self, in_channels, out_channels, atrous_rates):
        super().__init__()
        rate1, rate2, rate3 = atrous_rates
        self.b0 = conv_bn_relu(in_channels, out_channels, 1)
        self.b1 = conv_bn_relu(in_channels, out_channels, 3, rate1)
        self.b2 = conv_bn_relu(in_channels, out_channels, 3, rate2)
        self.b3 = conv_bn_relu(in_channels, out_channels, 3, rate3)
        self.b4 = ASPPPooling(in_channels, out_channels)
        self.project = conv_bn_relu(5 * out_channels, out_channels, 1)

    def forward(self, x):
        y = torch.cat((self.b0(x), self.b1(x), self.b2(x), self.b3(x), self.b4(x)), 1)
        return self.project(y)


class DeepLabV3Plus(nn.Module):
    """The authors' DeepLabV3Plus around a given backbone."""

    def __init__(self, backbone, low_channels, high_channels, nclass, dilations=(6, 12, 18),
                 aspp_channels=None, reduce_channels=48, fuse_channels=256):
        super().__init__()
        aspp_channels = aspp_channels or high_channels // 8
        self.backbone = backbone
        self.head = ASPPModule(high_channels, aspp_channels, dilations)
        self.reduce = conv_bn_relu(low_channels, reduce_channels, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(aspp_channels + reduce_channels, fuse_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(fuse_channels),
            nn.ReLU(True),
            nn.Conv2d(fuse_channels, fuse_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(fuse_channels),
            nn.ReLU(True))
        self.classifier = nn.Conv2d(fuse_channels, nclass, 1, bias=True)

    def forward(self, x, need_fp=False):
        h, w = x.shape[-2:]
        feats = self.backbone(x)
        c1, c4 = feats[0], feats[-1]
        if need_fp:
            outs = self._decode(torch.cat((c1, nn.Dropout2d(0.5)(c1))),
                                torch.cat((c4, nn.Dropout2d(0.5)(c4))))
            outs = F.interpolate(outs, size=(h, w), mode='bilinear', align_corners=True)
            out, out_fp = outs.chunk(2)
            return out, out_fp
        out = self._decode(c1, c4)
        return F.interpolate(out, size=(h, w), mode='bilinear', align_corners=True)

    def _decode(self, c1, c4):
        c4 = self.head(c4)
        c4 = F.interpolate(c4, size=c1.shape[-2:], mode='bilinear', align_corners=True)
        c1 = self.reduce(c1)
        feature = self.fuse(torch.cat([c1, c4], dim=1))
        return self.classifier(feature)


def sgd(model, lr, lr_multi=10.0):
    """The authors' optimizer: backbone at lr, every other parameter at lr * lr_multi."""
    return torch.optim.SGD(
        [{'params': model.backbone.parameters(), 'lr': lr},
         {'params': [p for name, p in model.named_parameters() if 'backbone' not in name],
          'lr': lr * lr_multi}],
        lr=lr, momentum=0.9, weight_decay=1e-4)


class ProbOhemCrossEntropy2d(nn.Module):
    """The authors' util/ohem.py (from TorchSemiSeg), without class weights, re-typed."""

    def __init__(self, ignore_index, thresh=0.7, min_kept=256):
        super().__init__()
        self.ignore_index, self.thresh, self.min_kept = ignore_index, float(thresh), int(min_kept)
        self.criterion = nn.CrossEntropyLoss(reduction='mean', ignore_index=ignore_index)

    def forward(self, pred, target):
        b, c, h, w = pred.size()
        target = target.view(-1)
        valid_mask = target.ne(self.ignore_index)
        target = target * valid_mask.long()
        num_valid = valid_mask.sum()
        prob = F.softmax(pred, dim=1)
        prob = (prob.transpose(0, 1)).reshape(c, -1)
        if self.min_kept > num_valid:
            pass
        elif num_valid > 0:
            prob = prob.masked_fill_(~valid_mask, 1)
            mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
            threshold = self.thresh
            if self.min_kept > 0:
                index = mask_prob.argsort()
                threshold_index = index[min(len(index), self.min_kept) - 1]
                if mask_prob[threshold_index] > self.thresh:
                    threshold = mask_prob[threshold_index]
                kept_mask = mask_prob.le(threshold)
                target = target * kept_mask.long()
                valid_mask = valid_mask * kept_mask
        target = target.masked_fill_(~valid_mask, self.ignore_index)
        target = target.view(b, h, w)
        return self.criterion(pred, target)


def unimatch_loss(model, img_x, mask_x, img_u_w, img_u_s1, img_u_s2, ignore_mask, cutmix_box1,
                  cutmix_box2, img_u_w_mix, img_u_s1_mix, img_u_s2_mix, ignore_mask_mix,
                  conf_thresh=0.95, criterion_l=None):
    """The loss of one iteration of the authors' loop; the strong views are pasted in place,
    as theirs (pass copies). Returns the total and its terms. ``criterion_l``: their labeled
    criterion (default CELoss; ``ProbOhemCrossEntropy2d`` in the Cityscapes recipe)."""
    criterion_l = criterion_l or nn.CrossEntropyLoss(ignore_index=255)
    criterion_u = nn.CrossEntropyLoss(reduction='none')

    with torch.no_grad():
        model.eval()
        pred_u_w_mix = model(img_u_w_mix).detach()
        conf_u_w_mix = pred_u_w_mix.softmax(dim=1).max(dim=1)[0]
        mask_u_w_mix = pred_u_w_mix.argmax(dim=1)

    img_u_s1[cutmix_box1.unsqueeze(1).expand(img_u_s1.shape) == 1] = \
        img_u_s1_mix[cutmix_box1.unsqueeze(1).expand(img_u_s1.shape) == 1]
    img_u_s2[cutmix_box2.unsqueeze(1).expand(img_u_s2.shape) == 1] = \
        img_u_s2_mix[cutmix_box2.unsqueeze(1).expand(img_u_s2.shape) == 1]

    model.train()
    num_lb, num_ulb = img_x.shape[0], img_u_w.shape[0]
    preds, preds_fp = model(torch.cat((img_x, img_u_w)), True)
    pred_x, pred_u_w = preds.split([num_lb, num_ulb])
    pred_u_w_fp = preds_fp[num_lb:]
    pred_u_s1, pred_u_s2 = model(torch.cat((img_u_s1, img_u_s2))).chunk(2)

    pred_u_w = pred_u_w.detach()
    conf_u_w = pred_u_w.softmax(dim=1).max(dim=1)[0]
    mask_u_w = pred_u_w.argmax(dim=1)

    mask_u_w_cutmixed1, conf_u_w_cutmixed1, ignore_mask_cutmixed1 = \
        mask_u_w.clone(), conf_u_w.clone(), ignore_mask.clone()
    mask_u_w_cutmixed2, conf_u_w_cutmixed2, ignore_mask_cutmixed2 = \
        mask_u_w.clone(), conf_u_w.clone(), ignore_mask.clone()
    mask_u_w_cutmixed1[cutmix_box1 == 1] = mask_u_w_mix[cutmix_box1 == 1]
    conf_u_w_cutmixed1[cutmix_box1 == 1] = conf_u_w_mix[cutmix_box1 == 1]
    ignore_mask_cutmixed1[cutmix_box1 == 1] = ignore_mask_mix[cutmix_box1 == 1]
    mask_u_w_cutmixed2[cutmix_box2 == 1] = mask_u_w_mix[cutmix_box2 == 1]
    conf_u_w_cutmixed2[cutmix_box2 == 1] = conf_u_w_mix[cutmix_box2 == 1]
    ignore_mask_cutmixed2[cutmix_box2 == 1] = ignore_mask_mix[cutmix_box2 == 1]

    loss_x = criterion_l(pred_x, mask_x)
    loss_u_s1 = criterion_u(pred_u_s1, mask_u_w_cutmixed1)
    loss_u_s1 = loss_u_s1 * ((conf_u_w_cutmixed1 >= conf_thresh) & (ignore_mask_cutmixed1 != 255))
    loss_u_s1 = loss_u_s1.sum() / (ignore_mask_cutmixed1 != 255).sum().item()
    loss_u_s2 = criterion_u(pred_u_s2, mask_u_w_cutmixed2)
    loss_u_s2 = loss_u_s2 * ((conf_u_w_cutmixed2 >= conf_thresh) & (ignore_mask_cutmixed2 != 255))
    loss_u_s2 = loss_u_s2.sum() / (ignore_mask_cutmixed2 != 255).sum().item()
    loss_u_w_fp = criterion_u(pred_u_w_fp, mask_u_w)
    loss_u_w_fp = loss_u_w_fp * ((conf_u_w >= conf_thresh) & (ignore_mask != 255))
    loss_u_w_fp = loss_u_w_fp.sum() / (ignore_mask != 255).sum().item()

    loss = (loss_x + loss_u_s1 * 0.25 + loss_u_s2 * 0.25 + loss_u_w_fp * 0.5) / 2.0
    mask_ratio = ((conf_u_w >= conf_thresh) & (ignore_mask != 255)).sum().item() / \
        (ignore_mask != 255).sum()
    return dict(loss=loss, loss_x=loss_x, loss_u_s1=loss_u_s1, loss_u_s2=loss_u_s2,
                loss_u_w_fp=loss_u_w_fp, mask_ratio=mask_ratio)


def unimatch_step(model, optimizer, batch, conf_thresh=0.95):
    """One iteration of the authors' loop (without the learning-rate update): the loss of
    ``batch`` (a dict of ``unimatch_loss``'s tensor arguments), zero_grad, backward, step."""
    batch = {k: v.clone() for k, v in batch.items()}
    out = unimatch_loss(model, conf_thresh=conf_thresh, **batch)
    optimizer.zero_grad()
    out['loss'].backward()
    optimizer.step()
    return out


# --- weights: ours -> the reference ---------------------------------------------------------
def module_pairs(ref, head):
    """(reference module, our module) for every layer of a ``UniMatchDeepLabV3PlusHead`` with
    dilations (1, r1, r2, r3): conv with conv, BN with BN."""
    def cbr(seq, conv_module):
        return [(seq[0], conv_module.conv), (seq[1], conv_module.norm)]
    aspp = ref.head
    pairs = []
    for branch, ours in zip((aspp.b0, aspp.b1, aspp.b2, aspp.b3), head.aspp_modules):
        pairs += cbr(branch, ours)
    pairs += cbr(aspp.b4.gap[1:], head.image_pool[1])
    pairs += cbr(aspp.project, head.bottleneck)
    pairs += cbr(ref.reduce, head.c1_bottleneck)
    pairs += cbr(ref.fuse[0:2], head.fuse[0]) + cbr(ref.fuse[3:5], head.fuse[1])
    pairs.append((ref.classifier, head.conv_seg))
    return pairs


def copy_from_ours(ref, head, backbone):
    """Give the reference our head's weights and buffers and our backbone's state."""
    ref.backbone.load_state_dict(backbone.state_dict())
    for theirs, ours in module_pairs(ref, head):
        theirs.load_state_dict(ours.state_dict())


def named_pairs(ref, head, backbone):
    """(name, reference tensor, our tensor) over every parameter and buffer of the network."""
    out = []
    for name, theirs in ref.backbone.state_dict(keep_vars=True).items():
        out.append(('backbone.' + name, theirs, backbone.state_dict(keep_vars=True)[name]))
    for i, (theirs, ours) in enumerate(module_pairs(ref, head)):
        ours_state = ours.state_dict(keep_vars=True)
        for name, tensor in theirs.state_dict(keep_vars=True).items():
            out.append((f'head[{i}].{name}', tensor, ours_state[name]))
    return out


def reference_for(head, backbone):
    """A reference network of the widths of ``head`` (dilations (1, r1, r2, r3)), with copies
    of our weights, in our dtype."""
    import copy
    if len(head.dilations) != 4 or head.dilations[0] != 1:
        raise ValueError(f'the authors\' ASPP has a 1x1 branch and three rates: dilations '
                         f'(1, r1, r2, r3), got {head.dilations}')
    ref = DeepLabV3Plus(
        copy.deepcopy(backbone), low_channels=head.c1_bottleneck.conv.in_channels,
        high_channels=head.in_channels, nclass=head.num_classes,
        dilations=head.dilations[1:], aspp_channels=head.channels,
        reduce_channels=head.c1_bottleneck.conv.out_channels, fuse_channels=head.channels)
    ref.to(head.conv_seg.weight.dtype)
    copy_from_ours(ref, head, backbone)
    return ref
