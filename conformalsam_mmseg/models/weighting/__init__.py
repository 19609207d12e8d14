from .dynamic_loss_weighter import (ConstantWeight, DynamicLossWeighter,
                                    ExponentialDecayWeight, RampWeight,
                                    ReliabilityWeight)

__all__ = ['DynamicLossWeighter', 'ExponentialDecayWeight', 'ConstantWeight', 'RampWeight',
           'ReliabilityWeight']
