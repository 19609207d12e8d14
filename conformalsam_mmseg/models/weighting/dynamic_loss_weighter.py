"""ConformalSAM's dynamic loss weighting in Stage II: L = (1 - lambda(t)) L_s + lambda(t) L_u.

The paper lets lambda(t) decay exponentially so that training leans more on the ground truth
as it goes; its constants are not public. A schedule is a small registered strategy that maps
the progress tau in [0, 1] through Stage II (0 at the switch to self-reliance, 1 at the last
iteration) and, optionally, the reliability of the current pseudo-labels to lambda.
"""
import math

import torch
import torch.nn as nn
from mmseg.registry import MODELS


@MODELS.register_module()
class ExponentialDecayWeight:
    """lambda(tau) = lambda_0 * exp(-gamma * tau), the paper's form (default).

    Defaults: lambda_0 = 0.5 continues Stage I's equal weighting of L_s and L_u at the switch;
    gamma = ln 10 lets lambda fall tenfold, to 0.05, by the end of training.
    """

    def __init__(self, lambda_0=0.5, gamma=math.log(10)):
        _check_unit('lambda_0', lambda_0)
        if gamma < 0:
            raise ValueError(f'ExponentialDecayWeight: gamma must be >= 0, got {gamma}')
        self.lambda_0, self.gamma = lambda_0, gamma

    def __call__(self, tau, reliability=None):
        return self.lambda_0 * math.exp(-self.gamma * tau)


@MODELS.register_module()
class ConstantWeight:
    """lambda(tau) = value: the ablation without dynamic weighting."""

    def __init__(self, value=0.5):
        _check_unit('value', value)
        self.value = value

    def __call__(self, tau, reliability=None):
        return self.value


@MODELS.register_module()
class RampWeight:
    """lambda moves linearly from ``start`` to ``end`` over Stage II."""

    def __init__(self, start=0.5, end=0.05):
        _check_unit('start', start)
        _check_unit('end', end)
        self.start, self.end = start, end

    def __call__(self, tau, reliability=None):
        return self.start + (self.end - self.start) * tau


@MODELS.register_module()
class ReliabilityWeight:
    """lambda = max_lambda * reliability, where reliability is the fraction of unlabeled pixels
    whose pseudo-label is kept (e.g. confident): trust the pseudo-labels as much as they are
    kept."""

    def __init__(self, max_lambda=0.5):
        _check_unit('max_lambda', max_lambda)
        self.max_lambda = max_lambda

    def __call__(self, tau, reliability=None):
        if reliability is None:
            raise ValueError('ReliabilityWeight needs the reliability of the pseudo-labels; the '
                             'segmentor passes the kept-pixel ratio of the current batch.')
        return self.max_lambda * float(reliability)


def _check_unit(name, value):
    if not 0 <= value <= 1:
        raise ValueError(f'{name} must lie in [0, 1] (it weighs L_u against L_s), got {value}')


@MODELS.register_module()
class DynamicLossWeighter(nn.Module):
    """Weighs L_s and L_u in Stage II with a ``schedule`` strategy; stateful and checkpointed.

    ``start_iter`` / ``end_iter`` (buffers, so a resumed run keeps them) delimit Stage II; the
    last lambda is kept for logging.
    """

    def __init__(self, schedule=dict(type='ExponentialDecayWeight')):
        super().__init__()
        self.schedule = MODELS.build(schedule)
        self.register_buffer('start_iter', torch.tensor(-1, dtype=torch.long))
        self.register_buffer('end_iter', torch.tensor(-1, dtype=torch.long))
        self.register_buffer('last_lambda', torch.tensor(float('nan')))

    def begin(self, start_iter, end_iter):
        if end_iter <= start_iter:
            raise ValueError(f'Stage II must end after it starts: [{start_iter}, {end_iter})')
        self.start_iter.fill_(start_iter)
        self.end_iter.fill_(end_iter)

    @property
    def started(self):
        return int(self.start_iter) >= 0

    def progress(self, cur_iter):
        if not self.started:
            raise RuntimeError('DynamicLossWeighter.begin(start_iter, end_iter) was not called; '
                               'SelfRelianceHook calls it at the switch to Stage II.')
        span = int(self.end_iter) - int(self.start_iter)
        return min(max((cur_iter - int(self.start_iter)) / span, 0.0), 1.0)

    def forward(self, loss_s, loss_u, cur_iter, reliability=None):
        """Returns ((1 - lambda) L_s, lambda L_u) and records lambda."""
        lam = float(self.schedule(self.progress(cur_iter), reliability))
        self.last_lambda.fill_(lam)
        return (1 - lam) * loss_s, lam * loss_u
