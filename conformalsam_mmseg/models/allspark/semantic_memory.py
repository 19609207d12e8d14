"""AllSpark's semantic memory: per-class FIFO queues of unlabeled channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, broadcast, get_world_size

SYNC_MODES = ('rank0', 'all_gather')


class SemanticMemory(nn.Module):
    """One FIFO queue per class of ``capacity`` channel vectors of length ``length``.

    A channel of the unlabeled feature map (a vector over the N = h*w positions of the deepest
    feature) is put in the queue of the class it resembles most: **channel-wise semantic
    grouping** resizes the pseudo-label pass's logits to h x w, takes the cosine similarity
    between each class's map and each channel, and assigns the channel to the argmax class.

    State (buffers, so ``state_dict`` and checkpoints hold it and a resumed run continues with
    the same queues), as the authors': ``queue`` (K, capacity, length), initialised with
    standard normal noise (``torch.randn``) that the channels overwrite slot by slot; ``ptr``
    (K,) the slot the next channel of each class goes to. The queue is a ring: the i-th
    channel enqueued into class k since the start goes to slot i mod capacity, so a step that
    brings more than ``capacity`` channels of one class leaves its last ``capacity`` ones, each
    in its ring slot, and moves the pointer by the number brought. ``count`` (K,) says how
    many slots hold channels (at most ``capacity``); it is for logging only.

    Used as keys and values (``as_tokens``) each class is one "image" of ``capacity`` = C
    channels, the shape of one unlabeled sample's tokens (N, C): the whole queue, noise
    included until it is overwritten, in slot order, as the authors read it.

    Distributed training (``sync``):

    * ``'rank0'`` (the authors'): every rank enqueues its own channels into a copy of rank 0's
      memory. The authors' DDP broadcasts module buffers from rank 0 at each training forward,
      before the module enqueues; here the queue and pointer are broadcast from rank 0 right
      before each enqueue, which is the same. Rank 0's memory is the one that persists (and
      the one a checkpoint holds); the other ranks' channels are read only in their own step.
    * ``'all_gather'``: the channels and their classes are gathered from all ranks (rank order)
      and enqueued everywhere, so every rank holds the memory a single process with the global
      batch would hold.

    Args:
        num_classes (int): K.
        capacity (int): channels per class, C of the AllSpark module.
        length (int): N = h*w of the deepest feature at the training crop.
        sync (str): 'rank0' or 'all_gather', see above.
    """

    def __init__(self, num_classes, capacity, length, sync='rank0'):
        super().__init__()
        if sync not in SYNC_MODES:
            raise ValueError(f'SemanticMemory sync must be one of {SYNC_MODES}, got {sync!r}')
        self.num_classes, self.capacity, self.length = num_classes, capacity, length
        self.sync = sync
        self.register_buffer('queue', torch.randn(num_classes, capacity, length))
        self.register_buffer('ptr', torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('count', torch.zeros(num_classes, dtype=torch.long))

    @staticmethod
    def group(channels, logits):
        """Channel-wise semantic grouping.

        Args:
            channels: (B, C, h, w) unlabeled channel maps.
            logits: (B, K, H, W) the pseudo-label pass's class maps (the authors use logits).

        Returns:
            (B, C) long: the class whose map has the largest cosine similarity with each
            channel (bilinear resize to h x w, align_corners=False).
        """
        b, c, h, w = channels.shape
        maps = F.interpolate(logits.float(), size=(h, w), mode='bilinear', align_corners=False)
        maps = F.normalize(maps.flatten(2), dim=-1)  # (B, K, N)
        channels = F.normalize(channels.float().flatten(2), dim=-1)  # (B, C, N)
        similarity = maps @ channels.transpose(1, 2)  # (B, K, C)
        return similarity.argmax(dim=1)

    def _check_length(self, n):
        if n != self.length:
            raise ValueError(
                f'The semantic memory holds channels of length {self.length} (h*w of the '
                f'deepest feature at the training crop) but the feature has {n} positions; '
                'set the AllSpark neck\'s crop_size to the training crop (the crop of '
                'the data preprocessor), or, for a backbone other than MiT, its feature_size '
                'to the (h, w) of the deepest feature at that crop.')

    @torch.no_grad()
    def push(self, cls, vectors):
        """Enqueue ``vectors`` (n, length), oldest first, into the ring of class ``cls``:
        vector i goes to slot (ptr + i) mod capacity (a later one overwrites an earlier one in
        the same slot) and the pointer moves to (ptr + n) mod capacity."""
        self._check_length(vectors.shape[1])
        n = vectors.shape[0]
        kept = min(n, self.capacity)  # only the last ``capacity`` vectors survive the ring
        ptr = int(self.ptr[cls])
        offsets = torch.arange(n - kept, n, device=self.queue.device)
        self.queue[cls, (ptr + offsets) % self.capacity] = vectors[n - kept:].to(self.queue.dtype)
        self.ptr[cls] = (ptr + n) % self.capacity
        self.count[cls] = min(int(self.count[cls]) + n, self.capacity)

    @torch.no_grad()
    def update(self, channels, logits):
        """Group this step's unlabeled channels (B, C, h, w) by the pseudo-label pass's logits
        (B, K, H, W) and enqueue each into its class, image by image, channels in order;
        synchronised across ranks as ``sync`` says."""
        if logits.shape[0] != channels.shape[0] or logits.shape[1] != self.num_classes:
            raise ValueError(
                f'The pseudo-label logits have shape {tuple(logits.shape)}; the semantic memory '
                f'needs one map of {self.num_classes} classes per unlabeled image '
                f'({channels.shape[0]}).')
        self._check_length(channels.shape[2] * channels.shape[3])
        classes = self.group(channels, logits).flatten()  # (B*C,)
        vectors = channels.flatten(2).flatten(0, 1)  # (B*C, N), image-major, channel order
        if get_world_size() > 1:
            if self.sync == 'rank0':
                for buf in (self.queue, self.ptr, self.count):
                    broadcast(buf, src=0)
            else:
                vectors = torch.cat(all_gather(vectors.contiguous()))
                classes = torch.cat(all_gather(classes.contiguous()))
        for cls in classes.unique().tolist():
            self.push(cls, vectors[classes == cls])

    def items(self, cls):
        """The channels of class ``cls``, oldest first: (count, length)."""
        n, ptr = int(self.count[cls]), int(self.ptr[cls])
        if n < self.capacity:
            return self.queue[cls, :n]
        return torch.cat((self.queue[cls, ptr:], self.queue[cls, :ptr]))

    def as_tokens(self, num_tokens=None):
        """The memory as keys / values for the labeled half: (K, N, C), each class one
        "image" of C = capacity channels."""
        if num_tokens is not None:
            self._check_length(num_tokens)
        return self.queue.transpose(1, 2)
