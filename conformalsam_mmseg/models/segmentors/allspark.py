"""AllSpark (Wang et al., CVPR 2024): reborn labeled features from unlabeled in the transformer."""
import copy
import math

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from ..allspark import AllSparkNeck
from .semi_base import SemiSegmentor


def memory_warmup_iters(epochs, num_unlabeled, unlabeled_per_gpu, num_gpus):
    """Iterations in ``epochs`` epochs, an epoch being one pass over the unlabeled set.

    Each rank reads ceil(num_unlabeled / num_gpus) unlabeled images per pass (the sampler pads
    the list to a multiple of the world size, as ``DistributedSampler``) in batches of
    ``unlabeled_per_gpu``, the last incomplete batch dropped (the authors' ``drop_last``).
    AllSpark's default, 5 epochs of VOC classic 1464 (9118 unlabeled images) with 2 images per
    GPU on 4 GPUs: ``memory_warmup_iters(5, 9118, 2, 4)`` = 5 * 1140 = 5700.
    """
    return epochs * (math.ceil(num_unlabeled / num_gpus) // unlabeled_per_gpu)


DEFAULT_MEMORY_WARMUP_ITERS = memory_warmup_iters(5, 9118, 2, 4)  # 5700


def _check_source_ratio(source_ratio, where):
    if source_ratio is None:
        return
    ratio = [int(n) for n in source_ratio]
    if len(ratio) != 2 or ratio[0] != ratio[1]:
        raise ValueError(
            f'AllSpark needs equal labeled and unlabeled batch sizes (its module splits every '
            f'batch into two equal halves and the labeled half attends to the unlabeled one), '
            f'but {where} is {list(source_ratio)}; set it to [B, B] and the batch size to 2 * B.')


def check_equal_batches(cfg):
    """Fail early if an AllSpark config gives unequal labeled and unlabeled batches.

    Reads ``train_dataloader.sampler.source_ratio`` ([labeled, unlabeled] per GPU) and
    ``model.semi_train_cfg.source_ratio`` of a whole (mmengine) config; does nothing for other
    models (ConformalSAM: its host). ``tools/train.py`` calls it before the runner is built: the
    model alone never sees the data loader.
    """
    model = cfg.get('model') or {}
    if model.get('type') == 'ConformalSAM':
        model = model.get('host') or {}
    if model.get('type') != 'AllSpark':
        return
    sampler = (cfg.get('train_dataloader') or {}).get('sampler') or {}
    _check_source_ratio(sampler.get('source_ratio'), 'train_dataloader.sampler.source_ratio')
    _check_source_ratio((model.get('semi_train_cfg') or {}).get('source_ratio'),
                        'model.semi_train_cfg.source_ratio')


def _complete_neck(segmentor, data_preprocessor):
    """Fill the AllSpark neck's ``num_classes`` (from the decode head) and ``crop_size`` (from
    the data preprocessor's ``size``), so each is set in one place of the config."""
    segmentor = copy.deepcopy(segmentor)
    neck = segmentor.get('neck')
    if not neck or neck.get('type') not in ('AllSparkNeck', AllSparkNeck):
        raise ValueError(
            "AllSpark's segmentor must be an EncoderDecoder with neck=dict(type='AllSparkNeck', "
            f"...) between the MiT backbone and the SegFormer head; got neck={neck}.")
    head_classes = segmentor['decode_head']['num_classes']
    if neck.get('num_classes') is None:
        neck['num_classes'] = head_classes
    elif neck['num_classes'] != head_classes:
        raise ValueError(f"AllSparkNeck num_classes={neck['num_classes']} differs from "
                         f'decode_head.num_classes={head_classes}; leave the neck\'s unset.')
    if neck.get('crop_size') is None:
        inner = (data_preprocessor or {}).get('data_preprocessor', data_preprocessor) or {}
        if inner.get('size') is None:
            raise ValueError(
                'AllSpark sizes its semantic memory from the training crop: set the data '
                "preprocessor's size=crop_size or the AllSparkNeck's crop_size.")
        neck['crop_size'] = tuple(inner['size'])
    return segmentor


@MODELS.register_module()
class AllSpark(SemiSegmentor):
    """AllSpark, step by step as the authors' training loop.

    The student is a SegFormer (MiT backbone, ``AllSparkNeck``, SegFormer MLP head). Each
    iteration holds B labeled images ('sup', strongly colour-augmented by the pipeline) and
    B unlabeled images ('unsup_weak', weak view only):

    1. no grad, eval mode: predict the unlabeled batch -> logits ``pred_u_w`` and the
       pseudo-label (argmax, no confidence threshold); hand the logits to the AllSpark module,
       which groups the unlabeled channels by them (channel-wise semantic grouping);
    2. train mode: forward cat(img_x, img_u_w); the module first enqueues this step's
       unlabeled channels into the semantic memory, then reborns the labeled half's deepest
       feature from the unlabeled channels of the batch, or, after ``memory_warmup_iters``
       iterations, from the semantic memory;
    3. loss = (CE(pred_x, mask_x) + CE(pred_u, mask_u)) / 2, ignore 255 in the labeled maps.
       As the authors, the unlabeled loss covers every pixel of the crop, the padding (black
       before normalisation, see the AllSpark pipelines) included; ``ignore_padding=True``
       leaves padded pixels out.

    The iteration count lives in the model (buffer ``iteration``, +1 per ``loss`` call), so a
    resumed run switches the memory on at the same iteration; the memory is a buffer of the
    module, so checkpoints hold it. Evaluation never uses the memory.

    semi_train_cfg keys:
        memory_warmup_iters (int): iterations before the memory is used. Default 5700 = 5
            epochs of VOC classic 1464; for other data compute it with
            ``memory_warmup_iters(5, num_unlabeled, unlabeled_per_gpu, num_gpus)``.
        loss_weights (dict): x=0.5, u=0.5 (the formula above, expanded).
        ignore_padding (bool): leave padded pixels out of the unlabeled loss. Default False
            (the authors').
        sup_loss (dict, optional): the labeled loss; None: cross-entropy (the authors' VOC,
            ADE20K and COCO recipes); ``dict(type='ProbOhem', thresh=0.7, min_kept=N)``: the
            OHEM of their Cityscapes recipe (``SemiSegmentor.sup_loss``).
        source_ratio (list, optional): [labeled, unlabeled] per GPU, as the sampler's; checked
            to be equal when the model is built.
    """

    def __init__(self, segmentor, semi_train_cfg=None, data_preprocessor=None, **kwargs):
        cfg = dict(memory_warmup_iters=DEFAULT_MEMORY_WARMUP_ITERS,
                   loss_weights=dict(x=0.5, u=0.5), ignore_padding=False)
        cfg.update(semi_train_cfg or {})
        _check_source_ratio(cfg.get('source_ratio'), 'semi_train_cfg.source_ratio')
        if cfg.get('ema_teacher', False):
            raise ValueError('AllSpark trains without an EMA teacher (pseudo-labels come from '
                             'the student in eval mode); remove semi_train_cfg.ema_teacher.')
        segmentor = _complete_neck(segmentor, data_preprocessor)
        super().__init__(segmentor, semi_train_cfg=cfg, data_preprocessor=data_preprocessor,
                         **kwargs)
        self.register_buffer('iteration', torch.zeros((), dtype=torch.long))

    @property
    def allspark(self):
        """The student's AllSpark module (with its semantic memory)."""
        return self.student.neck.allspark

    def loss(self, multi_batch_inputs, multi_batch_data_samples):
        cfg = self.semi_train_cfg
        img_x = multi_batch_inputs['sup']
        mask_x = self.stack_seg_maps(multi_batch_data_samples['sup'])
        img_u_w = multi_batch_inputs['unsup_weak']
        ignore_mask = self.stack_seg_maps(multi_batch_data_samples['unsup_weak'])
        num_lb, num_ulb = img_x.shape[0], img_u_w.shape[0]
        if num_lb != num_ulb:
            raise ValueError(
                f'AllSpark needs equal labeled and unlabeled batch sizes, got {num_lb} labeled '
                f'and {num_ulb} unlabeled images; set the sampler\'s source_ratio to [B, B].')
        use_memory = int(self.iteration) >= cfg['memory_warmup_iters']
        self.iteration += 1

        with torch.no_grad():
            self.student.eval()
            pred_u_w = self.logits(self.student, img_u_w).detach()
            mask_u_w = pred_u_w.argmax(dim=1)
        self.student.train()
        self.allspark.prepare(pred_u_w, use_memory=use_memory)

        pred_x, pred_u = self.logits(self.student, torch.cat((img_x, img_u_w))).split(
            [num_lb, num_ulb])

        mask_u = mask_u_w
        if cfg['ignore_padding']:
            mask_u = mask_u_w.masked_fill(ignore_mask == 255, self.ignore_index)
        loss_x = self.sup_loss(pred_x, mask_x)
        loss_u = F.cross_entropy(pred_u, mask_u, ignore_index=self.ignore_index)

        w = cfg['loss_weights']
        valid = ignore_mask != 255
        conf_u_w = pred_u_w.softmax(dim=1).amax(dim=1)
        memory = self.allspark.semantic_memory
        return dict(
            sup_loss_x=w['x'] * loss_x,
            unsup_loss_u=w['u'] * loss_u,
            unsup_pseudo_conf=(conf_u_w * valid).sum() / valid.sum().clamp(min=1),
            unsup_memory_on=torch.tensor(float(use_memory), device=img_x.device),
            unsup_memory_fill=memory.count.sum() / (memory.num_classes * memory.capacity))
