from .semi_sampler import MultiSourceSampler

__all__ = ['MultiSourceSampler']
