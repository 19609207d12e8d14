"""AllSpark as the authors' code computes it, re-typed from their formulas for the tests.

Every function reads the weights of our modules (so both sides use identical weights) but
computes with its own arithmetic, following the authors' ``CrossAttnMem`` / ``AllSpark`` /
``SemiDecoder`` / ``SegFormerHead`` and ``train_allspark.py`` step. The ``revert`` flags give
the behaviours this project had before it followed the authors, for negative controls:

* ``'averaged_cross'``: the cross-attention split into H heads, one attention per head;
* ``'head_major_u'``: the unlabeled heads concatenated head-major (h*C + c) before projection;
* ``'read_then_enqueue'``: the memory read before this step's channels are enqueued;
* ``'softmax_grouping'``: channels grouped by softmax probabilities instead of logits;
* ``'last_c_at_ptr'``: a class that brings more than C channels keeps its last C at the
  pointer, which stays;
* ``'paired_eval'``: in evaluation each image attends to its own channels only;
* ``'c1_first_head'``: the head concatenating its levels c1 .. c4;
* ``'ignore_padding'``: padded pixels left out of the unlabeled loss.
"""
import torch
import torch.nn.functional as F


def inorm(maps, eps=1e-5):
    """psi: each map (the last two dims) minus its mean, over sqrt(biased variance + eps)."""
    mean = maps.mean(dim=(-2, -1), keepdim=True)
    var = ((maps - mean) ** 2).mean(dim=(-2, -1), keepdim=True)
    return (maps - mean) / torch.sqrt(var + eps)


def dropout(x, p, training):
    return F.dropout(x, p, training) if training and p > 0 else x


class ReferenceAllSpark:
    """The authors' AllSpark module and semantic memory on the weights of our
    ``AllSparkModule`` ``ours`` (the queue is copied: the reference keeps its own)."""

    def __init__(self, ours, revert=()):
        self.m = ours
        self.revert = set(revert)
        self.heads = ours.attention.num_heads
        self.c = ours.attention.channels
        self.p = ours.attention.attn_dropout.p
        self.kv_queue = ours.semantic_memory.queue.detach().clone()
        self.queue_ptr = ours.semantic_memory.ptr.clone()

    # --- semantic memory ------------------------------------------------------------------
    def enqueue_one_image(self, emb_u, channel_cls):
        """emb_u (N, C) of one image; channel_cls (C,) the class of each channel."""
        size = self.c
        for cls in torch.unique(channel_cls).tolist():
            vecs = emb_u[:, channel_cls == cls].t()  # (n, N), channel order
            n = vecs.shape[0]
            ptr = int(self.queue_ptr[cls])
            if ptr + n > size:  # wraps around: the tail first, then the head
                self.kv_queue[cls, ptr:] = vecs[:size - ptr]
                self.kv_queue[cls, :ptr + n - size] = vecs[size - ptr:]
                self.queue_ptr[cls] = ptr + n - size
            else:
                self.kv_queue[cls, ptr:ptr + n] = vecs
                self.queue_ptr[cls] = (ptr + n) % size

    def enqueue_batch_last_c(self, emb_u, channel_cls):
        """The reverted 'last_c_at_ptr' update: per class over the whole batch."""
        size = self.c
        vecs_all = emb_u.transpose(1, 2).reshape(-1, emb_u.shape[1])  # (B*C, N)
        classes = channel_cls.reshape(-1)
        for cls in torch.unique(classes).tolist():
            vecs = vecs_all[classes == cls][-size:]
            ptr = int(self.queue_ptr[cls])
            for i, v in enumerate(vecs):
                self.kv_queue[cls, (ptr + i) % size] = v
            self.queue_ptr[cls] = (ptr + len(vecs)) % size

    def group(self, emb_u, pseudo_map):
        """argmax over classes of cos(map_k resized to the feature, channel)."""
        n = emb_u.shape[1]
        h, w = self.hw
        if 'softmax_grouping' in self.revert:
            pseudo_map = pseudo_map.softmax(dim=1)
        maps = F.interpolate(pseudo_map, size=(h, w), mode='bilinear', align_corners=False)
        maps = maps.flatten(2)  # (B, K, N)
        assert maps.shape[-1] == n
        sim = F.normalize(maps, dim=-1) @ F.normalize(emb_u, dim=1)  # (B, K, C)
        return sim.argmax(dim=1)  # (B, C)

    def update_memory(self, emb_u, pseudo_map):
        with torch.no_grad():
            channel_cls = self.group(emb_u, pseudo_map)
            if 'last_c_at_ptr' in self.revert:
                self.enqueue_batch_last_c(emb_u, channel_cls)
            else:
                for b in range(emb_u.shape[0]):
                    self.enqueue_one_image(emb_u[b], channel_cls[b])

    # --- attention ------------------------------------------------------------------------
    def unlabeled(self, emb_u, training):
        a, c, heads = self.m.attention, self.c, self.heads
        q, k, v = emb_u @ a.query_u.weight.t(), emb_u @ a.key_u.weight.t(), \
            emb_u @ a.value_u.weight.t()
        maps, values = [], []
        for h in range(heads):
            sl = slice(h * c, (h + 1) * c)
            maps.append(q[..., sl].transpose(1, 2) @ k[..., sl])  # (B, C, C)
            values.append(v[..., sl])
        attn = torch.stack(maps, dim=1)  # (B, H, C, C)
        attn = dropout(inorm(attn).softmax(dim=-1), self.p, training)
        ctx = [attn[:, h] @ values[h].transpose(1, 2) for h in range(heads)]  # (B, C, N) each
        if 'head_major_u' in self.revert:
            cat = torch.cat([x.transpose(1, 2) for x in ctx], dim=-1)  # h * C + c
        else:
            cat = torch.stack(ctx, dim=-1).permute(0, 2, 1, 3).flatten(2)  # c * H + h
        return dropout(cat @ a.out_u.weight.t(), self.p, training)

    def labeled(self, emb_l, kv, training, paired=False):
        """emb_l (B, N, C); kv (S, N, C) sources whose channels are keys and values."""
        a = self.m.attention
        q = emb_l @ a.query_l.weight.t()  # (B, N, HC)
        k = kv @ a.key_l.weight.t()  # (S, N, HC)
        v = kv @ a.value_l.weight.t()
        if paired:
            keys, vals = k, v
        else:  # the channels of all sources side by side: column s * HC + j
            keys = torch.cat(list(k), dim=1).unsqueeze(0)  # (1, N, S*HC)
            vals = torch.cat(list(v), dim=1).unsqueeze(0)
        if 'averaged_cross' in self.revert:  # one attention per head, head-major concat
            c, outs = self.c, []
            src = keys.shape[-1] // (self.heads * c)
            for h in range(self.heads):
                cols = torch.cat([torch.arange(s * self.heads * c + h * c,
                                               s * self.heads * c + (h + 1) * c)
                                  for s in range(src)])
                m = q[..., h * c:(h + 1) * c].transpose(1, 2) @ keys[..., cols]
                m = dropout(inorm(m).softmax(dim=-1), self.p, training)
                outs.append((m @ vals[..., cols].transpose(1, 2)).transpose(1, 2))
            ctx = torch.cat(outs, dim=-1)
        else:
            attn = q.transpose(1, 2) @ keys  # (B, HC, M), one map per image
            attn = dropout(inorm(attn).softmax(dim=-1), self.p, training)
            ctx = (attn @ vals.transpose(1, 2)).transpose(1, 2)  # (B, N, HC)
        return dropout(ctx @ a.out_l.weight.t(), self.p, training)

    # --- the module -----------------------------------------------------------------------
    def forward(self, en, training, pseudo_map=None, using_smem=False):
        """The authors' AllSpark.forward: in evaluation the feature is duplicated."""
        m = self.m
        if not training:
            en = torch.cat((en, en))
        b2, _, h, w = en.shape
        self.hw = (h, w)
        tokens = m.embed(en).flatten(2).transpose(1, 2)
        emb = m.attn_norm(tokens)
        emb_l, emb_u = emb[:b2 // 2], emb[b2 // 2:]
        if training and 'read_then_enqueue' not in self.revert:
            self.update_memory(emb_u, pseudo_map)
        out_u = self.unlabeled(emb_u, training)
        if using_smem and training:
            kv = self.kv_queue.clone().transpose(1, 2)  # (K, N, C)
        else:
            kv = emb_u
        out_l = self.labeled(emb_l, kv, training,
                             paired=not training and 'paired_eval' in self.revert)
        if training and 'read_then_enqueue' in self.revert:
            self.update_memory(emb_u, pseudo_map)
        out = m.encoder_norm(torch.cat((out_l, out_u)) + tokens)
        out = m.reconstruct(out.transpose(1, 2).reshape(b2, -1, h, w))
        return out if training else out[:b2 // 2]


def reference_head(head, feats, training, revert=()):
    """The authors' SegFormerHead on the weights of our ``SegformerMLPHead``."""
    c1 = feats[0]
    n = c1.shape[0]
    embedded = []
    for x, lin in zip(feats, head.linears):
        e = (x.flatten(2).transpose(1, 2) @ lin.weight.t() + lin.bias)
        e = e.permute(0, 2, 1).reshape(n, -1, x.shape[2], x.shape[3])
        if e.shape[2:] != c1.shape[2:]:
            e = F.interpolate(e, size=c1.shape[2:], mode='bilinear', align_corners=False)
        embedded.append(e)
    order = embedded if 'c1_first_head' in revert else embedded[::-1]  # c4, c3, c2, c1
    fuse = head.fusion_conv
    x = fuse.conv(torch.cat(order, dim=1))
    x = F.relu(getattr(fuse, fuse.norm_name)(x))
    x = F.dropout2d(x, head.dropout.p, training) if training else x
    return head.conv_seg(x)


class ReferenceAllSparkModel:
    """backbone (shared code) -> the authors' AllSpark -> the authors' head, on the weights of
    our ``AllSpark`` segmentor's student, and the authors' training step."""

    def __init__(self, segmentor, revert=()):
        self.net = segmentor.student
        self.revert = set(revert)
        self.allspark = ReferenceAllSpark(segmentor.allspark, revert)

    def forward(self, x, training, pseudo_map=None, using_smem=False):
        self.net.train(training)
        feats = list(self.net.backbone(x))
        feats[-1] = self.allspark.forward(feats[-1], training, pseudo_map, using_smem)
        out = reference_head(self.net.decode_head, feats, training, self.revert)
        return F.interpolate(out, size=x.shape[2:], mode='bilinear', align_corners=False)

    def loss(self, img_x, mask_x, img_u, ignore_mask, using_smem):
        """train_allspark.py's step: the pseudo-label pass in eval mode (its logits are the
        grouping map), then the training forward; (CE_x + CE_u) / 2."""
        with torch.no_grad():
            pred_u_pseudo = self.forward(img_u, training=False).detach()
            pseudo_label = pred_u_pseudo.argmax(dim=1)
        preds = self.forward(torch.cat((img_x, img_u)), True, pred_u_pseudo, using_smem)
        pred_x, pred_u = preds.split([img_x.shape[0], img_u.shape[0]])
        if 'ignore_padding' in self.revert:
            pseudo_label = pseudo_label.masked_fill(ignore_mask == 255, 255)
        loss_x = F.cross_entropy(pred_x, mask_x, ignore_index=255)
        loss_u = F.cross_entropy(pred_u, pseudo_label, ignore_index=255)
        return (loss_x + loss_u) / 2.0


def authors_sgd(model, lr=0.001, lr_multi=10.0):
    """The authors' optimizer: the backbone at lr, every other parameter at lr * lr_multi."""
    backbone = [p for n, p in model.named_parameters() if 'backbone' in n]
    rest = [p for n, p in model.named_parameters() if 'backbone' not in n]
    return torch.optim.SGD([{'params': backbone, 'lr': lr},
                            {'params': rest, 'lr': lr * lr_multi}],
                           lr=lr, momentum=0.9, weight_decay=1e-4)
