"""EfficientNet-Lite0 backbone: registration, shapes, packaged ImageNet weights, the
DeepLabV3+ config, freezing and norm_eval."""
import os.path as osp

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import conformalsam_mmseg  # noqa: F401  (registers the backbone)
from conformalsam_mmseg.models import EfficientNetLite0
from conformalsam_mmseg.models.backbones.efficientnet_lite import (
    STAGE_BLOCKS, efficientnet_lite0_weights_path)
from conftest import REPO
from mmseg.registry import MODELS

CONFIG = osp.join(REPO, 'configs', '_base_', 'models', 'deeplabv3plus_efficientnet-lite0.py')
PROBE = '_blocks.9._depthwise_conv.weight'  # any trunk tensor will do
PROBE_BUF = '_blocks.9._bn1.running_mean'


@pytest.fixture(scope='module')
def imagenet_state():
    return torch.load(efficientnet_lite0_weights_path(), map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def pretrained_backbone():
    return MODELS.build(dict(type='EfficientNetLite0'))


def test_registered_and_built_through_registry(pretrained_backbone):
    assert MODELS.get('EfficientNetLite0') is EfficientNetLite0
    assert isinstance(pretrained_backbone, EfficientNetLite0)
    assert pretrained_backbone.out_channels == (24, 40, 112, 320)
    assert isinstance(pretrained_backbone.out_channels, tuple)


@pytest.mark.parametrize('output_stride, strides', [(32, (4, 8, 16, 32)), (16, (4, 8, 16, 16))])
def test_output_strides_and_channels(output_stride, strides):
    backbone = MODELS.build(
        dict(type='EfficientNetLite0', pretrained=False, output_stride=output_stride)).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 96))
    assert isinstance(outs, tuple) and len(outs) == 4
    for out, ch, s in zip(outs, backbone.out_channels, strides):
        assert tuple(out.shape) == (1, ch, 64 // s, 96 // s)


def test_out_indices_subset():
    backbone = EfficientNetLite0(pretrained=False, out_indices=(1, 3)).eval()
    assert backbone.out_channels == (40, 320)
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 40, 8, 12), (1, 320, 2, 3)]


def test_packaged_imagenet_weights_are_loaded(pretrained_backbone, imagenet_state):
    own = pretrained_backbone.state_dict()
    # every trunk tensor is the packaged one; only the classifier head is left out
    assert set(imagenet_state) - set(own) == {
        k for k in imagenet_state if k.startswith(('_conv_head.', '_bn1.', '_fc.'))}
    for key in (PROBE, PROBE_BUF, '_conv_stem.weight'):
        assert torch.equal(own[key], imagenet_state[key])
    scratch = EfficientNetLite0(pretrained=False).state_dict()
    assert not torch.equal(scratch[PROBE], imagenet_state[PROBE])
    assert not torch.equal(scratch[PROBE_BUF], imagenet_state[PROBE_BUF])


def test_mismatching_checkpoint_raises(tmp_path, imagenet_state):
    bad = dict(imagenet_state)
    bad.pop(PROBE)
    bad['_blocks.99.extra'] = torch.zeros(1)
    path = str(tmp_path / 'bad.pth')
    torch.save(bad, path)
    backbone = EfficientNetLite0(pretrained=False)
    with pytest.raises(RuntimeError, match=r'(?s)missing.*_blocks\.9\._depthwise.*unexpected'):
        backbone.load_imagenet_weights(path)
    with pytest.raises(ValueError, match='exclusive'):
        EfficientNetLite0(pretrained=True, init_cfg=dict(type='Kaiming', layer='Conv2d'))


def _seg_batch(n=2, h=96, w=96, num_classes=11, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, h, w), generator=g, dtype=torch.long))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_deeplabv3plus_config_trains(imagenet_state):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(CONFIG)
    assert 'pretrained' not in cfg.model
    cfg.model.data_preprocessor.size = (96, 96)  # the crop size, set by dataset configs
    with DefaultScope.overwrite_default_scope('mmseg'):  # resolves SegDataPreProcessor
        model = MODELS.build(cfg.model)
    model.init_weights()  # what the Runner does; must not overwrite the ImageNet trunk
    assert torch.equal(model.backbone.state_dict()[PROBE], imagenet_state[PROBE])
    model.train()
    data = model.data_preprocessor(_seg_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.backbone._conv_stem.weight.grad.abs().sum() > 0
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0


def test_frozen_stages():
    backbone = EfficientNetLite0(pretrained=False, frozen_stages=2)
    backbone.train()
    frozen = [backbone._conv_stem, backbone._bn0]
    for start, end in STAGE_BLOCKS[:2]:
        frozen += list(backbone._blocks[start:end])
    trainable = list(backbone._blocks[STAGE_BLOCKS[2][0]:])
    for m in frozen:
        assert all(not p.requires_grad for p in m.parameters())
        assert all(not bn.training for bn in m.modules() if isinstance(bn, _BatchNorm))
    for m in trainable:
        assert all(p.requires_grad for p in m.parameters())
        assert all(bn.training for bn in m.modules() if isinstance(bn, _BatchNorm))
    before = backbone._bn0.running_mean.clone()
    sum(o.mean() for o in backbone(torch.randn(2, 3, 64, 64))).backward()
    assert torch.equal(backbone._bn0.running_mean, before)  # frozen BN statistics stay put
    assert backbone._conv_stem.weight.grad is None
    assert backbone._blocks[-1]._project_conv.weight.grad is not None

    only_stem = EfficientNetLite0(pretrained=False, frozen_stages=0)
    assert not only_stem._conv_stem.weight.requires_grad
    assert all(p.requires_grad for p in only_stem._blocks.parameters())


def test_norm_eval_keeps_bn_in_eval_mode():
    backbone = EfficientNetLite0(pretrained=False, norm_eval=True)
    backbone.train()
    assert backbone.training
    bns = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not bn.training for bn in bns)
    before = backbone._blocks[5]._bn1.running_var.clone()
    with torch.no_grad():
        backbone(torch.randn(2, 3, 64, 64))
    assert torch.equal(backbone._blocks[5]._bn1.running_var, before)

    default = EfficientNetLite0(pretrained=False).train()
    assert all(m.training for m in default.modules() if isinstance(m, _BatchNorm))


def test_bn_momentum_default_is_pytorchs_and_none_keeps_the_packages():
    bns = lambda b: [m for m in b.modules() if isinstance(m, _BatchNorm)]  # noqa: E731
    default = EfficientNetLite0(pretrained=False)
    assert bns(default) and all(m.momentum == 0.1 for m in bns(default))
    package = EfficientNetLite0(pretrained=False, bn_momentum=None)
    assert all(m.momentum == pytest.approx(0.01) for m in bns(package))
    # the momentum is what the running statistics follow: one batch moves them by m
    for b, m in ((default, 0.1), (package, 0.01)):
        bn = b._bn0
        before = bn.running_mean.clone()
        b.train()
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            b(x)
            batch_mean = bn.running_mean.new_tensor(
                b._conv_stem(x).mean(dim=(0, 2, 3)))
        torch.testing.assert_close(bn.running_mean, (1 - m) * before + m * batch_mean)
    with pytest.raises(ValueError, match='bn_momentum'):
        EfficientNetLite0(pretrained=False, bn_momentum=0.0)
