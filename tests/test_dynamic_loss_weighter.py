import math

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import conformalsam_mmseg  # noqa: F401
from helpers import DEMO_CONFIG


def test_exponential_decay_by_default():
    weighter = MODELS.build(dict(type='DynamicLossWeighter'))
    weighter.begin(start_iter=600, end_iter=800)
    expected = {600: 0.5, 700: 0.5 * math.exp(-math.log(10) / 2), 800: 0.05, 900: 0.05}
    for it, lam in expected.items():
        s, u = weighter(torch.tensor(2.0), torch.tensor(4.0), it)
        assert weighter.last_lambda.item() == pytest.approx(lam)
        assert s.item() == pytest.approx(2 * (1 - lam)) and u.item() == pytest.approx(4 * lam)


@pytest.mark.parametrize('schedule, tau, reliability, lam', [
    (dict(type='ConstantWeight', value=0.3), 0.7, None, 0.3),
    (dict(type='RampWeight', start=0.5, end=0.1), 0.25, None, 0.4),
    (dict(type='ReliabilityWeight', max_lambda=0.5), 0.9, 0.6, 0.3),
    (dict(type='ExponentialDecayWeight', lambda_0=0.8, gamma=2.0), 0.5, None, 0.8 * math.exp(-1)),
])
def test_schedules(schedule, tau, reliability, lam):
    assert MODELS.build(schedule)(tau, reliability) == pytest.approx(lam)


def test_state_is_checkpointed_and_errors_are_clear():
    weighter = MODELS.build(dict(type='DynamicLossWeighter'))
    with pytest.raises(RuntimeError, match='SelfRelianceHook'):
        weighter(torch.tensor(1.0), torch.tensor(1.0), 5)
    weighter.begin(10, 20)
    restored = MODELS.build(dict(type='DynamicLossWeighter'))
    restored.load_state_dict(weighter.state_dict())
    assert restored.progress(15) == 0.5
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        MODELS.build(dict(type='ConstantWeight', value=1.5))
    with pytest.raises(ValueError, match='reliability'):
        MODELS.build(dict(type='ReliabilityWeight'))(0.5)


def _samples(maps):
    return [SegDataSample(gt_sem_seg=PixelData(data=m[None].long())) for m in maps]


def test_self_reliance_loss_is_the_weighted_sum_with_confident_own_labels(monkeypatch):
    net = Config.fromfile(DEMO_CONFIG).model
    model = MODELS.build(dict(type='SelfReliance', segmentor=net,
                              semi_train_cfg=dict(conf_thresh=0.6)))
    model.weighter.begin(0, 10)
    model.cur_iter = 5
    g = torch.Generator().manual_seed(0)
    img_x, img_u = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    mask_x = torch.randint(0, 4, (2, 4, 4), generator=g)
    ignore = torch.zeros(2, 4, 4, dtype=torch.long)
    ignore[1, -1] = 255
    own = 2 * torch.randn(2, 4, 4, 4, generator=g)  # eval-mode prediction on the weak view
    train_out = torch.randn(4, 4, 4, 4, generator=g)

    def fake_logits(network, inputs, feats=None):
        return own.clone() if not torch.is_grad_enabled() else train_out.clone()
    monkeypatch.setattr(model, 'logits', fake_logits)
    losses = model.loss(dict(sup=img_x, unsup_weak=img_u),
                        dict(sup=_samples(mask_x), unsup_weak=_samples(ignore)))

    conf, label = own.softmax(1).max(1)
    kept = (conf >= 0.6) & (ignore != 255)
    assert 0 < kept.sum() < kept.numel()
    log_p_x = train_out[:2].log_softmax(1).gather(1, mask_x[:, None])[:, 0]
    log_p_u = train_out[2:].log_softmax(1).gather(1, label[:, None])[:, 0]
    loss_s, loss_u = -log_p_x.mean(), -log_p_u[kept].mean()
    lam = 0.5 * math.exp(-math.log(10) * 0.5)
    assert losses['sup_loss_s'].item() == pytest.approx((1 - lam) * loss_s.item(), rel=1e-5)
    assert losses['unsup_loss_u'].item() == pytest.approx(lam * loss_u.item(), rel=1e-5)
    assert losses['unsup_kept_ratio'].item() == pytest.approx(kept.sum().item() / 28)
