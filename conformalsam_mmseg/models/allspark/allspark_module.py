"""The AllSpark module (Wang et al., CVPR 2024): labeled features reborn from unlabeled channels."""
import torch
import torch.nn as nn

from .semantic_memory import SemanticMemory


class ChannelCrossAttention(nn.Module):
    """Channel-wise (cross-)attention of AllSpark, the attention block of UCTransNet's CCT.

    Tokens are (B, N, C): N = h*w spatial positions, C channels. Unlike ordinary attention the
    *channels* attend to each other: a channel is a vector of length N, the attention map of a
    head is C x M (M key channels) from q^T k, normalised by ``InstanceNorm2d`` (psi), then
    softmax over the key channels, dropout, and multiplied by v^T. The heads are averaged.

    Two sets of projections, as in the authors' ``Attention``:

    * the unlabeled half attends to itself (``query_u``, ``key_u``, ``value_u``, ``out_u``);
    * the labeled half's query comes from the labeled tokens (``query_l``) while key and value
      (``key_l``, ``value_l``) project the unlabeled channels of the whole batch, flattened
      ``b n c -> n (b c)`` so M = B*C, or the semantic memory (classes as the batch, M = K*C).
      Each labeled channel is thus reborn as a convex combination of (projected) unlabeled
      channels.

    Choices where the description is silent (following the authors' UCTransNet lineage):
    every head has full-width projections ``Linear(C, C, bias=False)`` (so a head's map is
    C x C, not C/h x C/h) and the heads' contexts are averaged; no 1/sqrt(d) scaling, since the
    InstanceNorm right after it makes the scores scale-free; dropout ``attn_drop`` both on the
    attention map and after the output projection (UCTransNet's attn/proj dropout, one rate).

    Args:
        channels (int): C.
        num_heads (int): 2 in AllSpark.
        attn_drop (float): 0.1 in AllSpark.
    """

    def __init__(self, channels, num_heads=2, attn_drop=0.1):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads

        def heads():
            return nn.ModuleList(nn.Linear(channels, channels, bias=False)
                                 for _ in range(num_heads))

        self.query_u, self.key_u, self.value_u = heads(), heads(), heads()
        self.query_l, self.key_l, self.value_l = heads(), heads(), heads()
        self.out_u = nn.Linear(channels, channels, bias=False)
        self.out_l = nn.Linear(channels, channels, bias=False)
        self.psi = nn.InstanceNorm2d(num_heads)  # no affine, no running stats: per-map norm
        self.softmax = nn.Softmax(dim=-1)
        self.attn_dropout = nn.Dropout(attn_drop)
        self.proj_dropout = nn.Dropout(attn_drop)

    @staticmethod
    def project(linears, tokens):
        """(S, N, C) -> (S, heads, N, C): one full-width projection per head."""
        return torch.stack([linear(tokens) for linear in linears], dim=1)

    @staticmethod
    def flatten_channels(projected):
        """(S, heads, N, C) -> (1, heads, N, S*C): ``b n c -> n (b c)``, the channels of all S
        sources side by side (source-major), shared by every query of the batch."""
        s, h, n, c = projected.shape
        return projected.permute(1, 2, 0, 3).reshape(1, h, n, s * c)

    def attend(self, q, k, v):
        """Channel-wise attention.

        Args:
            q: (B, heads, N, C) queries; k, v: (B or 1, heads, N, M) keys / values.

        Returns:
            context (B, N, C) averaged over heads, and the attention weights (B, heads, C, M)
            before dropout (non-negative, each row sums to 1 over the M key channels).
        """
        scores = q.transpose(-1, -2) @ k  # (B, heads, C, M)
        weights = self.softmax(self.psi(scores))
        context = self.attn_dropout(weights) @ v.transpose(-1, -2)  # (B, heads, C, N)
        return context.mean(dim=1).transpose(1, 2), weights

    def unlabeled_attention(self, x_u):
        """The unlabeled half attends to itself, each image to its own channels."""
        q, k, v = (self.project(p, x_u) for p in (self.query_u, self.key_u, self.value_u))
        context, _ = self.attend(q, k, v)
        return self.proj_dropout(self.out_u(context))

    def labeled_attention(self, x_l, kv, paired=False):
        """The labeled half's channels reborn from ``kv``'s channels.

        Args:
            x_l: (B, N, C) labeled tokens (queries).
            kv: (S, N, C) tokens whose channels are the keys and values: the unlabeled half
                (S = B) or the semantic memory (S = K classes, each a queue of C channels).
            paired (bool): image i attends only to kv[i] (S = B). Used in evaluation, where
                kv is the image itself; otherwise all S*C channels are shared by the batch.

        Returns:
            output (B, N, C) and attention weights (B, heads, C, C if paired else S*C).
        """
        q = self.project(self.query_l, x_l)
        k, v = self.project(self.key_l, kv), self.project(self.value_l, kv)
        if not paired:
            k, v = self.flatten_channels(k), self.flatten_channels(v)
        context, weights = self.attend(q, k, v)
        return self.proj_dropout(self.out_l(context)), weights


class AllSparkModule(nn.Module):
    """The AllSpark module on the deepest feature of a batch cat(labeled, unlabeled).

    1x1 conv + GELU (channel embedding) -> LayerNorm -> channel-wise cross-attention ->
    residual -> LayerNorm -> 1x1 conv + GELU (reconstruction), as in the authors' code.

    Where the labeled half's keys and values come from (recorded in ``kv_source`` after
    every forward):

    * ``'batch'``: training, before the memory is on: the unlabeled channels of the whole
      batch;
    * ``'memory'``: training, once ``prepare(..., use_memory=True)``: the semantic memory;
    * ``'self'``: evaluation. The caller duplicates the input (``cat(x, x)``) as the authors
      do; each image of the labeled copy attends to its own unlabeled copy, so predictions do
      not depend on which images share a batch (with the authors' batch of 1 this is exactly
      their behaviour). The memory is never used in evaluation.

    Semantic memory: the segmentor hands over the pseudo probability map of the unlabeled
    batch (``prepare``) before the training forward; after computing the output, the module
    groups the unlabeled half's channels (the LayerNorm-ed tokens, the same tensor the key /
    value projections read) by class and enqueues them. The memory is read before it is
    updated (MoCo's order), so a step never attends to its own unlabeled channels through the
    memory.

    Args:
        in_channels (int): channels of the deepest feature (512 for MiT-B5).
        num_classes (int): K, the number of memory queues.
        num_tokens (int): N = h*w of the deepest feature at the training crop (memory vector
            length).
        embed_channels (int, optional): C inside the module, also each queue's capacity.
            Default: ``in_channels`` (as the authors).
        num_heads (int): 2. attn_drop (float): 0.1.
    """

    def __init__(self, in_channels, num_classes, num_tokens, embed_channels=None,
                 num_heads=2, attn_drop=0.1):
        super().__init__()
        c = embed_channels or in_channels
        self.embed = nn.Sequential(nn.Conv2d(in_channels, c, 1), nn.GELU())
        self.attn_norm = nn.LayerNorm(c, eps=1e-6)
        self.attention = ChannelCrossAttention(c, num_heads, attn_drop)
        self.encoder_norm = nn.LayerNorm(c, eps=1e-6)
        self.reconstruct = nn.Sequential(nn.Conv2d(c, in_channels, 1), nn.GELU())
        self.semantic_memory = SemanticMemory(num_classes, capacity=c, length=num_tokens)
        self.use_memory = False
        self.kv_source = None
        self._pseudo_prob_map = None

    def prepare(self, pseudo_prob_map, use_memory):
        """Hand over the unlabeled batch's pseudo probability map (B, K, H, W) for the next
        training forward's semantic grouping, and say whether the labeled half attends to the
        memory (after the warm-up) or to the batch."""
        self._pseudo_prob_map = pseudo_prob_map
        self.use_memory = bool(use_memory)

    def forward(self, x):
        """(2B, in_channels, h, w), labeled half first -> the same shape."""
        if x.shape[0] % 2:
            raise ValueError(
                f'AllSpark splits its batch into a labeled and an unlabeled half of equal size; '
                f'got an odd batch of {x.shape[0]} feature maps.')
        b, h, w = x.shape[0] // 2, x.shape[2], x.shape[3]
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (2B, N, C)
        normed = self.attn_norm(tokens)
        x_l, x_u = normed[:b], normed[b:]

        if not self.training:
            self.kv_source = 'self'
            out_l, _ = self.attention.labeled_attention(x_l, x_u, paired=True)
        elif self.use_memory:
            self.kv_source = 'memory'
            memory = self.semantic_memory.as_tokens(num_tokens=h * w)
            out_l, _ = self.attention.labeled_attention(x_l, memory.to(x_l.dtype))
        else:
            self.kv_source = 'batch'
            out_l, _ = self.attention.labeled_attention(x_l, x_u)
        out_u = self.attention.unlabeled_attention(x_u)

        tokens = tokens + torch.cat((out_l, out_u))  # residual around the attention
        out = self.encoder_norm(tokens).transpose(1, 2).reshape(2 * b, -1, h, w)
        out = self.reconstruct(out)

        if self.training and self._pseudo_prob_map is not None:
            # Channel-wise semantic grouping of this step's unlabeled channels, then enqueue.
            channels = x_u.detach().transpose(1, 2).reshape(b, -1, h, w)
            self.semantic_memory.update(channels, self._pseudo_prob_map)
            self._pseudo_prob_map = None  # one map, one update: never reuse a stale map
        return out
