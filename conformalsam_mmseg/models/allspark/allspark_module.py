"""The AllSpark module (Wang et al., CVPR 2024): labeled features reborn from unlabeled channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .semantic_memory import SemanticMemory


def psi(scores):
    """AllSpark's psi: instance normalisation of each attention map (no affine, no running
    statistics, eps 1e-5): ``scores`` (B, maps, rows, cols) is normalised per (B, map)."""
    return F.instance_norm(scores, eps=1e-5)


class ChannelCrossAttention(nn.Module):
    """Channel-wise (cross-)attention of AllSpark, as in the authors' ``CrossAttnMem``.

    Tokens are (B, N, C): N = h*w spatial positions, C channels. The *channels* attend to each
    other: a channel is a vector of length N. Every projection maps C -> H*C (H heads of full
    width C, ``Linear(C, H*C, bias=False)``) and each output projection maps H*C -> C.

    * Unlabeled self-attention (``query_u``, ``key_u``, ``value_u``, ``out_u``): the H*C
      projected channels are split into H heads of C channels (head-major: channel j of the
      projection is head j // C); head h's map is q_h^T k_h (C x C), normalised by psi,
      softmax over the key channels, dropout, times v_h^T. The heads' contexts are
      concatenated channel-major (entry c * H + h is channel c of head h) and projected
      H*C -> C.
    * Labeled-from-unlabeled cross-attention (``query_l``, ``key_l``, ``value_l``, ``out_l``):
      ONE attention over all H*C projected channels. The keys and values are the projected
      channels of every source (the unlabeled images of the batch, or the classes of the
      semantic memory), flattened ``b n c -> n (b c)`` so that M = S*H*C; the map is
      (H*C) x M, normalised by psi over the whole map, softmax over the M key channels,
      dropout, times the values; projected H*C -> C.

    No 1/sqrt(d) scaling (psi makes the scores scale-free). ``attn_drop`` is used both on the
    attention maps and after the output projections. Linear weights are initialised
    Xavier-uniform, as the authors' module does.

    Args:
        channels (int): C.
        num_heads (int): H, 2 in AllSpark.
        attn_drop (float): 0.1 in AllSpark.
    """

    def __init__(self, channels, num_heads=2, attn_drop=0.1):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads
        width = channels * num_heads

        def linear(c_in, c_out):
            return nn.Linear(c_in, c_out, bias=False)

        self.query_u, self.key_u, self.value_u = (linear(channels, width) for _ in range(3))
        self.query_l, self.key_l, self.value_l = (linear(channels, width) for _ in range(3))
        self.out_u = linear(width, channels)
        self.out_l = linear(width, channels)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_dropout = nn.Dropout(attn_drop)
        self.proj_dropout = nn.Dropout(attn_drop)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def split_heads(self, projected):
        """(B, N, H*C) -> (B, H, N, C): head h is projected channels h*C .. (h+1)*C - 1."""
        b, n, _ = projected.shape
        return projected.view(b, n, self.num_heads, self.channels).transpose(1, 2)

    def unlabeled_attention(self, x_u):
        """The unlabeled half attends to itself, each image to its own channels, per head.

        Returns:
            output (B, N, C) and the attention weights (B, H, C, C) before dropout.
        """
        b, n, c = x_u.shape
        q, k, v = (self.split_heads(p(x_u)) for p in (self.query_u, self.key_u, self.value_u))
        weights = self.softmax(psi(q.transpose(-1, -2) @ k))  # (B, H, C, C)
        context = self.attn_dropout(weights) @ v.transpose(-1, -2)  # (B, H, C, N)
        context = context.permute(0, 3, 2, 1).reshape(b, n, c * self.num_heads)
        return self.proj_dropout(self.out_u(context)), weights

    def labeled_attention(self, x_l, kv, paired=False):
        """The labeled half's channels reborn from ``kv``'s channels in one attention.

        Args:
            x_l: (B, N, C) labeled tokens (queries).
            kv: (S, N, C) tokens whose channels are the keys and values: the unlabeled half
                (S = B) or the semantic memory (S = K classes, each C channels).
            paired (bool): image i attends only to kv[i] (S = B, M = H*C); otherwise every
                labeled image attends to all S*H*C channels (the authors' behaviour).

        Returns:
            output (B, N, C) and the attention weights (B, H*C, M) before dropout (each row
            non-negative, summing to 1 over the M key channels).
        """
        q = self.query_l(x_l).transpose(1, 2)  # (B, H*C, N)
        k, v = self.key_l(kv), self.value_l(kv)  # (S, N, H*C)
        if not paired:  # b n c -> n (b c): source-major, shared by every query of the batch
            s, n, width = k.shape
            k = k.transpose(0, 1).reshape(1, n, s * width)
            v = v.transpose(0, 1).reshape(1, n, s * width)
        weights = self.softmax(psi((q @ k).unsqueeze(1))).squeeze(1)  # (B, H*C, M)
        context = self.attn_dropout(weights) @ v.transpose(1, 2)  # (B, H*C, N)
        return self.proj_dropout(self.out_l(context.transpose(1, 2))), weights


EVAL_KEYS = ('batch', 'self')


class AllSparkModule(nn.Module):
    """The AllSpark module on the deepest feature of a batch cat(labeled, unlabeled).

    1x1 conv + GELU (channel embedding) -> LayerNorm -> channel-wise cross-attention ->
    residual -> LayerNorm -> 1x1 conv + GELU (reconstruction), as the authors' ``AllSpark``.

    Training (``forward`` on 2B maps, labeled half first), in the authors' order:

    1. if the segmentor handed over the pseudo-label pass's logits (``prepare``), the unlabeled
       half's channels (the LayerNorm-ed tokens) are grouped by class and enqueued into the
       semantic memory, so this step's channels are already in the memory it reads;
    2. the unlabeled half attends to itself;
    3. the labeled half attends to the unlabeled channels of the whole batch (``kv_source``
       'batch'), or, once ``prepare(..., use_memory=True)``, to the semantic memory
       ('memory').

    Evaluation (``forward`` on B maps, returns B maps): the authors duplicate the feature,
    cat(x, x), let the labeled copy attend to the unlabeled copy and keep the first half.
    Both halves are the same tokens, so the module computes the labeled path on x alone
    (the unlabeled path's output is discarded by the authors). With ``eval_keys='batch'``
    (the authors') each image attends to the channels of every image of the batch
    (``kv_source`` 'batch'); ``eval_keys='self'`` lets each image attend to itself only
    ('self'), so predictions do not depend on which images share a batch. The memory is
    never read or written in evaluation.

    Args:
        in_channels (int): channels of the deepest feature (512 for MiT-B5).
        num_classes (int): K, the number of memory queues.
        num_tokens (int): N = h*w of the deepest feature at the training crop (memory vector
            length).
        embed_channels (int, optional): C inside the module, also each queue's capacity.
            Default: ``in_channels`` (as the authors).
        num_heads (int): 2. attn_drop (float): 0.1.
        eval_keys (str): 'batch' (the authors') or 'self', see above.
        memory_sync (str): how the memory is kept under distributed training, see
            :class:`SemanticMemory`: 'rank0' (the authors') or 'all_gather'.
    """

    def __init__(self, in_channels, num_classes, num_tokens, embed_channels=None,
                 num_heads=2, attn_drop=0.1, eval_keys='batch', memory_sync='rank0'):
        super().__init__()
        if eval_keys not in EVAL_KEYS:
            raise ValueError(f'AllSpark eval_keys must be one of {EVAL_KEYS}, got {eval_keys!r}')
        c = embed_channels or in_channels
        self.embed = nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.GELU())
        self.attn_norm = nn.LayerNorm(c, eps=1e-6)
        self.attention = ChannelCrossAttention(c, num_heads, attn_drop)
        self.encoder_norm = nn.LayerNorm(c, eps=1e-6)
        self.reconstruct = nn.Sequential(nn.Conv2d(c, in_channels, 1), nn.GELU())
        self.semantic_memory = SemanticMemory(num_classes, capacity=c, length=num_tokens,
                                              sync=memory_sync)
        self.eval_keys = eval_keys
        self.use_memory = False
        self.kv_source = None
        self._pseudo_logits = None

    def prepare(self, pseudo_logits, use_memory):
        """Hand over the unlabeled batch's logits (B, K, H, W) from the pseudo-label pass, for
        the next training forward's channel-wise semantic grouping, and say whether the
        labeled half attends to the memory (after the warm-up) or to the batch."""
        self._pseudo_logits = pseudo_logits
        self.use_memory = bool(use_memory)

    def forward(self, x):
        """Training: (2B, in_channels, h, w), labeled half first -> the same shape.
        Evaluation: (B, in_channels, h, w) -> the same shape."""
        h, w = x.shape[2:]
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (2B or B, N, C)
        normed = self.attn_norm(tokens)
        if not self.training:
            paired = self.eval_keys == 'self'
            self.kv_source = 'self' if paired else 'batch'
            out, _ = self.attention.labeled_attention(normed, normed, paired=paired)
            return self._reconstruct(tokens + out, h, w)

        if x.shape[0] % 2:
            raise ValueError(
                f'AllSpark splits its training batch into a labeled and an unlabeled half of '
                f'equal size; got an odd batch of {x.shape[0]} feature maps.')
        b = x.shape[0] // 2
        x_l, x_u = normed[:b], normed[b:]
        if self._pseudo_logits is not None:
            # Channel-wise semantic grouping of this step's unlabeled channels, enqueued before
            # the memory is read.
            channels = x_u.detach().transpose(1, 2).reshape(b, -1, h, w)
            self.semantic_memory.update(channels, self._pseudo_logits)
            self._pseudo_logits = None  # one map, one update: never reuse a stale map
        out_u, _ = self.attention.unlabeled_attention(x_u)
        if self.use_memory:
            self.kv_source = 'memory'
            kv = self.semantic_memory.as_tokens(num_tokens=h * w).to(x_l.dtype, copy=True)
        else:
            self.kv_source = 'batch'
            kv = x_u
        out_l, _ = self.attention.labeled_attention(x_l, kv)
        return self._reconstruct(tokens + torch.cat((out_l, out_u)), h, w)

    def _reconstruct(self, tokens, h, w):
        out = self.encoder_norm(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        return self.reconstruct(out)
