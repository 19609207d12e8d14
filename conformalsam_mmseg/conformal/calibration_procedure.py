"""What a conformal calibration procedure is: how the labeled pixels are grouped, and how the
groups' conformal quantiles become one threshold per class.

The nonconformity score (:mod:`.scores`) turns a labeled pixel into a number s_y(x); a
procedure is the "predictor" that calibrates on those numbers. It counts them into a score
store, :class:`.ScoreHistogram` (streaming) or :class:`.ScoreList` (exact), and reads q from
it. :class:`.ConformalCalibrator` checks the input, computes the scores and owns the saved
state; the procedures are:

- :class:`.PixelWiseCalibration` (``mode='pixel'``): one group, all labeled pixels;
- :class:`.ClassWiseCalibration` (``mode='class'``): one group per true class (Mondrian);
- :class:`.ImageWiseCalibration` (``mode='image'``): one q_i per labeled image, aggregated.

A procedure's data travel in the calibrator's state as the five entries of
:meth:`CalibrationProcedure.state` (``counts``, ``overflow_max``, ``exact_scores``,
``image_q``, ``image_n``), None or empty where the procedure has none.
"""
import abc

import torch


class CalibrationProcedure(abc.ABC):
    """The interface. ``new_store(num_groups)`` makes a score store (a
    :class:`.ScoreHistogram` or a :class:`.ScoreList`)."""
    mode = None

    def __init__(self, num_classes, new_store):
        self.num_classes = num_classes
        self.new_store = new_store

    @abc.abstractmethod
    def add(self, scores, labels, valid):
        """Count true-class ``scores`` (B, H, W) on the CPU; ``labels`` are the pixels' ground
        truth (any device), ``valid`` the CPU mask of labeled pixels (None: all)."""

    @property
    @abc.abstractmethod
    def num_groups(self):
        """G, the number of groups (each with its own q)."""

    @abc.abstractmethod
    def group_counts(self):
        """n per group, (G,) int64."""

    @abc.abstractmethod
    def group_alphas(self):
        """alpha per group, a list of floats."""

    @abc.abstractmethod
    def group_thresholds(self):
        """q per group, (G,) float64, +inf where a group has too few pixels."""

    @abc.abstractmethod
    def thresholds(self):
        """q_k per class, (K,) float64."""

    @abc.abstractmethod
    def group_names(self, class_names=None):
        """A name per group, for reports."""

    @abc.abstractmethod
    def all_reduce(self, group=None):
        """Replace the data by those of every rank of ``group``, in place."""

    @abc.abstractmethod
    def state(self):
        """The five state entries (copies)."""

    @abc.abstractmethod
    def load(self, state):
        """Replace the data by those of a :meth:`state`."""


class GroupedCalibration(CalibrationProcedure):
    """A fixed set of groups, each with its own alpha, all counted into one score store:
    q_g is the conformal quantile of the scores of group g at alpha_g."""

    def __init__(self, num_classes, alphas, new_store):
        super().__init__(num_classes, new_store)
        self.alphas = list(alphas)
        self.store = new_store(len(self.alphas))

    @abc.abstractmethod
    def group_of(self, labels):
        """The group of every pixel (a CPU tensor shaped like ``labels``), None: all group 0."""

    def add(self, scores, labels, valid):
        self.store.add(scores, self.group_of(labels), valid)

    @property
    def num_groups(self):
        return len(self.alphas)

    def group_counts(self):
        return self.store.sizes()

    def group_alphas(self):
        return list(self.alphas)

    def group_thresholds(self):
        return self.store.quantiles(self.alphas)

    def all_reduce(self, group=None):
        self.store.all_reduce(group)

    def state(self):
        return dict(self.store.state(), image_q=torch.tensor([], dtype=torch.float64),
                    image_n=torch.tensor([], dtype=torch.int64))

    def load(self, state):
        self.store = self.new_store(self.num_groups)
        self.store.load_state(state)
