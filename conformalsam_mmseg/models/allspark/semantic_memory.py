"""AllSpark's semantic memory: per-class FIFO queues of unlabeled channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, get_world_size


class SemanticMemory(nn.Module):
    """One FIFO queue per class of up to ``capacity`` channel vectors of length ``length``.

    A channel of the unlabeled feature map (a vector over the N = h*w positions of the deepest
    feature) is put in the queue of the class it resembles most: **channel-wise semantic
    grouping** resizes the pseudo probability map to h x w, takes the cosine similarity between
    each class's probability map and each channel, and assigns the channel to the argmax class.
    Each queue keeps the ``capacity`` most recent channels (the oldest is overwritten first).

    State (buffers, so ``state_dict`` and checkpoints hold it and a resumed run continues with
    the same queues): ``queue`` (K, capacity, length), zeros where nothing was written yet;
    ``ptr`` (K,) the slot the next channel of each class goes to; ``count`` (K,) how many slots
    are filled (at most ``capacity``).

    Used as keys and values (``as_tokens``) each class is one "image" of ``capacity`` = C
    channels, exactly the shape of one unlabeled sample's tokens (N, C): the capacity is C so
    that the memory goes through the same key / value projections as the batch. Slots are taken
    in storage order (ring order, as a MoCo-style queue is read); empty slots are zeros and
    contribute zero keys and values.

    Distributed training: the channels and their classes are ``all_gather``-ed from all ranks
    (rank order) before they are enqueued, so every rank holds the same memory. Per-rank
    memories would make a resumed run differ from the interrupted one (the checkpoint saves
    rank 0's memory only, and mmengine's DDP wrapper does not broadcast buffers); with the
    gather, the memory sees the channels of the global batch, as a single-GPU run with the same
    global batch would.

    Args:
        num_classes (int): K.
        capacity (int): channels per class, C of the AllSpark module.
        length (int): N = h*w of the deepest feature at the training crop.
    """

    def __init__(self, num_classes, capacity, length):
        super().__init__()
        self.num_classes, self.capacity, self.length = num_classes, capacity, length
        self.register_buffer('queue', torch.zeros(num_classes, capacity, length))
        self.register_buffer('ptr', torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer('count', torch.zeros(num_classes, dtype=torch.long))

    @staticmethod
    def group(channels, prob):
        """Channel-wise semantic grouping.

        Args:
            channels: (B, C, h, w) unlabeled channel maps.
            prob: (B, K, H, W) pseudo probability map of the same images.

        Returns:
            (B, C) long: the class whose probability map has the largest cosine similarity
            with each channel.
        """
        b, c, h, w = channels.shape
        prob = F.interpolate(prob.float(), size=(h, w), mode='bilinear', align_corners=False)
        prob = F.normalize(prob.flatten(2), dim=-1)  # (B, K, N)
        channels = F.normalize(channels.float().flatten(2), dim=-1)  # (B, C, N)
        similarity = prob @ channels.transpose(1, 2)  # (B, K, C)
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
        """Enqueue ``vectors`` (n, length), oldest first, into the queue of class ``cls``."""
        self._check_length(vectors.shape[1])
        vectors = vectors[-self.capacity:]  # more than fit: the earliest are overwritten anyway
        n = vectors.shape[0]
        ptr = int(self.ptr[cls])
        slots = (ptr + torch.arange(n, device=self.queue.device)) % self.capacity
        self.queue[cls, slots] = vectors.to(self.queue.dtype)
        self.ptr[cls] = (ptr + n) % self.capacity
        self.count[cls] = min(int(self.count[cls]) + n, self.capacity)

    @torch.no_grad()
    def update(self, channels, prob):
        """Group this step's unlabeled channels (B, C, h, w) by the pseudo probability map
        (B, K, H, W), gather them from all ranks, and enqueue each into its class."""
        if prob.shape[0] != channels.shape[0] or prob.shape[1] != self.num_classes:
            raise ValueError(
                f'The pseudo probability map has shape {tuple(prob.shape)}; the semantic memory '
                f'needs one map of {self.num_classes} classes per unlabeled image '
                f'({channels.shape[0]}).')
        self._check_length(channels.shape[2] * channels.shape[3])
        classes = self.group(channels, prob).flatten()  # (B*C,)
        vectors = channels.flatten(2).flatten(0, 1)  # (B*C, N), image-major, channel order
        if get_world_size() > 1:
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
