"""Which runs the CamVid benchmark trains, in which order, and what each is estimated to cost.

Two annotator groups: 'strong' (the cross-sequence annotator at full resolution, the paper's
regime: strong but domain-shifted) with every row, and 'weak' (the half-resolution annotator of
the first benchmark) with the Stage I rows and ConformalSAM alone. Rows without an annotator
(supervised, UniMatch, AllSpark) run once per seed. The order puts complete comparisons first,
so that a benchmark stopped early has its most important rows on every seed:

1. supervised, raw, the paper's filter, the risk filter, ConformalSAM (strong), every seed;
2. the threshold candidates (seed 0, strong; the selection set chooses t*), then the other
   strong Stage I rows and ConformalSAM with the risk filter, every seed;
3. the supervised row of the hosts' recipe, UniMatch and UniMatch + ConformalSAM, every seed;
4. the weak group's rows, every seed;
5. AllSpark and AllSpark + ConformalSAM, every seed;
each tier for the first split, then for the others.
"""
import statistics
from dataclasses import dataclass

from training import ROWS, TAU_CANDIDATES

ROW = {r.name: r for r in ROWS}
ANNOTATORS = {'strong': 'data/annotator_cache/camvid_cross_sequence_full',
              'weak': 'data/annotator_cache/camvid_cross_sequence'}
# each annotator's trained weights, kept in the repository (the tool's --weights): every
# machine makes its cache from the same network
ANNOTATOR_WEIGHTS = {g: f'benchmarks/camvid/annotators/cross_sequence_{g}.pth'
                     for g in ANNOTATORS}
TIERS = (
    ('supervised', 'raw', 'conformal_pixel', 'risk', 'conformalsam'),
    ('threshold_0.9', 'threshold_best', 'conformal_pixel_filtering', 'conformal_class',
     'conformalsam_risk'),
    ('supervised_hosts_recipe', 'unimatch', 'unimatch_conformalsam'),
    'weak',
    ('allspark', 'allspark_conformalsam'),
)
WEAK_ROWS = ('raw', 'threshold_0.9', 'conformal_pixel', 'conformal_pixel_filtering',
             'conformal_class', 'risk', 'conformalsam')
# seconds per iteration on this machine's 2 cores (160 px, 4 + 4), for the estimates only;
# finished runs replace them with their own measurements
SECONDS_PER_ITER = {'none': 0.35, 'stage_one': 0.65, 'SelfReliance': 0.7, 'UniMatch': 2.0,
                    'AllSpark': 4.0}
EVAL_SECONDS = 60   # the selection-set validation and the val test of one run


@dataclass(frozen=True)
class Run:
    row: str
    split: str
    seed: int
    group: str = None          # the annotator group of rows that read an annotator
    tau: float = None          # a threshold candidate (row 'threshold_best' at this tau)

    @property
    def name(self):
        if self.tau is not None:
            return f'threshold_candidate_{self.tau:g}'
        return self.row

    def describe(self):
        return (f'{self.name}, split {self.split}, seed {self.seed}'
                + (f', {self.group} annotator' if self.group else ''))


def make_plan(seeds, splits, rows=None):
    """Every run, in the order above; ``rows`` limits the rows (names)."""
    wanted = set(rows or ROW)
    plan = []
    for split in splits:
        for tier in TIERS:
            if tier == 'weak':
                tier_runs = [Run(r, split, s, 'weak') for s in seeds for r in WEAK_ROWS
                             if r in wanted]
            else:
                tier_runs = []
                if 'threshold_best' in tier and 'threshold_best' in wanted:
                    # the candidates first (seed 0); 0.9 is the threshold_0.9 row's run
                    tier_runs += [Run('threshold_0.9', split, seeds[0], 'strong')]
                    tier_runs += [Run('threshold_best', split, seeds[0], 'strong', tau=t)
                                  for t in TAU_CANDIDATES if t != 0.9]
                tier_runs += [Run(r, split, s, 'strong' if ROW[r].conformalsam else None)
                              for s in seeds for r in tier if r in wanted
                              and Run(r, split, s, 'strong' if ROW[r].conformalsam else None)
                              not in tier_runs]
            plan += tier_runs
    return plan


def cost_class(run):
    row = ROW[run.row]
    if row.host in ('UniMatch', 'AllSpark'):
        return row.host
    if row.host == 'SelfReliance':
        return 'SelfReliance'
    return 'stage_one' if row.conformalsam else 'none'


def speed_factor(measured):
    """How much faster or slower than the defaults the measured cost classes ran (the median
    ratio; 1 without measurements): an unmeasured class is estimated at its default times it."""
    ratios = [v / SECONDS_PER_ITER[k] for k, v in (measured or {}).items() if v]
    return statistics.median(ratios) if ratios else 1.0


def estimate(run, iters, measured=None):
    """Seconds: ``iters`` at the measured (``measured[cost class]``) speed, or at the default
    speed scaled by the measured classes' ``speed_factor``."""
    cls = cost_class(run)
    per_iter = (measured or {}).get(cls) or SECONDS_PER_ITER[cls] * speed_factor(measured)
    return iters * per_iter + EVAL_SECONDS
