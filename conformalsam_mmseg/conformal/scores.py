"""Nonconformity scores s_k(x): how strange class k would be for pixel x, given the annotator.

A score function maps the annotator's class probabilities p(x) (B, K, H, W) to

- ``all_classes(probs)``: s_k(x) for every class k, (B, K, H, W), used to build prediction sets
  C(x) = {k : s_k(x) <= q_k};
- ``true_class(probs, labels)``: s_y(x) for the ground-truth class y of each pixel, (B, H, W),
  the calibration scores whose quantile gives q.

Both must compute s_y(x) with the same arithmetic, so that a pixel's calibration score and its
score at prediction time are the same number, bit for bit.

Scores are looked up by name in :data:`SCORES` (``'lac'``, ``'aps'``); add one with
:func:`register_score`.
"""
from abc import ABC, abstractmethod
import torch

SCORES = {}


def register_score(name):
    """Class decorator: make a :class:`NonconformityScore` subclass available as ``name``."""

    def wrap(cls):
        if name in SCORES:
            raise ValueError(f"a nonconformity score named '{name}' is already registered")
        cls.name = name
        SCORES[name] = cls
        return cls

    return wrap


def get_score(score):
    """The score function called ``score`` (a registered name), or ``score`` itself if it is one."""
    if isinstance(score, NonconformityScore):
        return score
    if isinstance(score, str) and score in SCORES:
        return SCORES[score]()
    raise ValueError(
        f'unknown nonconformity score {score!r}; use one of {sorted(SCORES)} or register a new '
        'one with conformalsam_mmseg.conformal.register_score')


class NonconformityScore(ABC):
    """Base class; subclasses implement :meth:`all_classes` and may speed up :meth:`true_class`.

    ``finite_on_probabilities`` says that the scores of finite probabilities are finite, so
    the calibrator can skip its NaN check once the probabilities passed theirs.
    """
    name = None
    finite_on_probabilities = False

    @abstractmethod
    def all_classes(self, probs):
        """s_k(x) for every class k: (B, K, H, W) scores of (B, K, H, W) probabilities."""

    def true_class(self, probs, labels):
        """s_y(x) for ``labels`` (B, H, W) int64, every value a valid class index."""
        return self.all_classes(probs).gather(1, labels.unsqueeze(1)).squeeze(1)


@register_score('lac')
class LAC(NonconformityScore):
    """Least ambiguous set-valued classifier: s_k(x) = 1 - p_k(x), the paper's score."""
    finite_on_probabilities = True

    def all_classes(self, probs):
        return torch.rsub(probs, 1)

    def true_class(self, probs, labels):
        # -p + 1 rounds exactly like 1 - p (IEEE subtraction is addition of the negation)
        return probs.gather(1, labels.unsqueeze(1)).squeeze(1).neg_().add_(1)


@register_score('aps')
class APS(NonconformityScore):
    """Adaptive prediction sets, non-randomised: s_k(x) = sum of p_j(x) over classes j ranked
    at or above k.

    Ranking is by probability, ties broken by class index (j ranks above k when p_j > p_k, or
    p_j == p_k and j <= k), which is what a stable descending sort gives. The randomised version
    (drawing u ~ U(0, 1) for the last class) is left out so scores are reproducible.
    """
    finite_on_probabilities = True

    def all_classes(self, probs):
        sorted_probs, order = torch.sort(probs, dim=1, descending=True, stable=True)
        scores = torch.empty_like(probs)
        scores.scatter_(1, order, sorted_probs.cumsum(1))
        return scores

