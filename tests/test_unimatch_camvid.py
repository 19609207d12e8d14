"""UniMatch trains on real CamVid through the whole semi-supervised stack."""
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import REPO, shared_data


def _total_loss(model, batch):
    torch.manual_seed(0)  # same CutMix boxes and feature dropout for both measurements
    with torch.no_grad():
        data = model.data_preprocessor(batch, True)
        losses = model.loss(data['inputs'], data['data_samples'])
    return sum(v for k, v in losses.items() if 'loss' in k).item()


def test_a_few_unimatch_iterations_lower_the_loss(tmp_path):
    camvid = shared_data('camvid')
    stems = sorted(f[:-4] for f in os.listdir(osp.join(camvid, 'images', 'train')))
    (tmp_path / 'labeled.txt').write_text('\n'.join(stems[:4]) + '\n')
    (tmp_path / 'unlabeled.txt').write_text('\n'.join(stems[100:108]) + '\n')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'unimatch',
                                   'unimatch_deeplabv3plus_effl0_camvid-1-8.py'))
    cfg.work_dir = str(tmp_path / 'work')
    crop = (96, 96)
    cfg.model.data_preprocessor.data_preprocessor.size = crop
    loader = cfg.train_dataloader
    loader.update(batch_size=6, num_workers=0, persistent_workers=False)
    loader.sampler.update(batch_size=6, source_ratio=[2, 4])
    for part, ann in (('labeled', 'labeled.txt'), ('unlabeled', 'unlabeled.txt')):
        dataset = loader.dataset[part]
        dataset.update(data_root=osp.dirname(camvid), ann_file=str(tmp_path / ann))
        for t in dataset.pipeline:
            if t.type == 'RandomCrop':
                t.crop_size = crop
    cfg.model.semi_train_cfg = dict(conf_thresh=0.5)  # let pseudo-labels count early on
    cfg.optim_wrapper.optimizer.lr = 0.01   # head x10 (the VOC recipe's rates): 12 iterations
    cfg.optim_wrapper.paramwise_cfg.custom_keys.decode_head.lr_mult = 10.0   # show the fall
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=12, val_interval=1000)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.pop('visualization')
    cfg.randomness = dict(seed=0)

    runner = Runner.from_cfg(cfg)
    batch = next(iter(runner.build_dataloader(cfg.train_dataloader, seed=1)))
    assert batch['inputs']['unsup_strong1'][2] is not None  # unlabeled views are present
    before = _total_loss(runner.model, batch)
    runner.train()
    after = _total_loss(runner.model, batch)
    assert after < 0.8 * before, (before, after)
