"""Validity by simulation: over many calibration draws from a synthetic annotator with a known
error structure, conformal risk control keeps the mean test risk <= target and Learn-then-Test
exceeds the target with frequency <= delta, pooled and per class.

The true risk of a threshold t, R(t) = E[L_new(t)] over fresh images, is computed once per
law from a large independent sample (straight from the definitions, no code under test); a
draw's test risk is R at the threshold it chose. A naive plug-in choice (the smallest t whose
calibration risk is <= target) is checked to violate far more often, so the tests can fail.
"""
import numpy as np
import pytest

from conformalsam_mmseg.conformal import RiskCalibrator, threshold_grid

from risk_synthetic import as_probs_and_labels, draw_images, per_image_losses

BINS = 32
SLOPE = [0.3, 0.8, 2.0]          # class 2 is annotated badly
ABSENT = [0.0, 0.3, 0.5]         # and is missing from half the images
DRAWS = 120
N_CAL = 60
PIXELS = 40
GROUPS = [None, 0, 1, 2]
TARGET, DELTA = 0.1, 0.1


@pytest.fixture(scope='module')
def true_risk():
    """R(t_j) per risk and group, from 6000 fresh images."""
    rng = np.random.default_rng(12345)
    conf, pred, wrong = draw_images(rng, 6000, PIXELS, SLOPE, ABSENT)
    grid = threshold_grid(BINS).tolist()
    out = {}
    for risk in ('kept_error', 'false_label_rate'):
        for group in GROUPS:
            losses = np.array(per_image_losses(list(conf), list(pred), list(wrong), grid,
                                               risk, group))
            out[risk, group] = losses.mean(0)
    return grid, out


def _draws(risk, mode):
    rng = np.random.default_rng({'kept_error': 1, 'false_label_rate': 2}[risk])
    for _ in range(DRAWS):
        images = draw_images(rng, N_CAL, PIXELS, SLOPE, ABSENT)
        cal = RiskCalibrator(3, TARGET, risk=risk, delta=DELTA, mode=mode, num_bins=BINS)
        cal.update(*as_probs_and_labels(*images, 3))
        yield cal, cal.calibrate(warn=False)


@pytest.mark.parametrize('mode', ['pixel', 'class'])
def test_conformal_risk_control_mean_test_risk_below_target(true_risk, mode):
    grid, risk_of = true_risk
    tested, naive = {g: [] for g in GROUPS}, {g: [] for g in GROUPS}
    for cal, result in _draws('kept_error', mode):
        for group, row in zip(GROUPS, result.groups):
            if row.source != 'calibrated':
                continue
            tested[group].append(risk_of['kept_error', group][grid.index(row.threshold)])
            sel, _ = cal.group_selection(group)
            naive_j = min(j for j in range(len(grid)) if sel.risk[j:].max() <= TARGET)
            naive[group].append(risk_of['kept_error', group][naive_j])
    for group in (GROUPS if mode == 'class' else [None]):
        assert len(tested[group]) >= DRAWS * 0.9, group
        mean = float(np.mean(tested[group]))
        # valid, and not vacuous: CRC is tight up to 2 B / (n + 1) plus one bin of risk
        assert TARGET - 0.12 < mean <= TARGET, (group, mean)
        assert np.mean(naive[group]) > mean, group


@pytest.mark.parametrize('mode', ['pixel', 'class'])
def test_learn_then_test_violation_frequency_below_delta(true_risk, mode):
    grid, risk_of = true_risk
    violated, naive_violated, kept = ({g: [] for g in GROUPS} for _ in range(3))
    for cal, result in _draws('false_label_rate', mode):
        for group, row in zip(GROUPS, result.groups):
            if row.source == 'fallback: pooled threshold':
                continue
            r = risk_of['false_label_rate', group][grid.index(row.threshold)]
            violated[group].append(r > TARGET)
            kept[group].append(row.kept_ratio)
            sel, _ = cal.group_selection(group)
            below = [j for j in range(len(grid) - 1) if sel.risk[j] <= TARGET]
            naive_j = min(below) if below else len(grid) - 1
            naive_violated[group].append(risk_of['false_label_rate', group][naive_j] > TARGET)
    for group in (GROUPS if mode == 'class' else [None]):
        assert len(violated[group]) >= DRAWS * 0.9, group
        assert np.mean(violated[group]) <= DELTA, group
        assert np.mean(kept[group]) > 0.02, group        # it does keep labels
        if risk_of['false_label_rate', group][0] > TARGET:   # labels need filtering here
            assert np.mean(naive_violated[group]) > 2 * DELTA, group
