"""Metrics against hand formulas, scipy and the published ImageNet-C numbers (docs/imagenet_c_spec.md §5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from robustbench_in.report import metrics
from robustbench_in.report.alexnet import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR,
    ALEXNET_MEAN_ERR,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)
from conftest import hand_ece, hand_wilson  # noqa: E402

# ------------------------------------------------------------------------------------------ AlexNet facts


def test_alexnet_table_matches_the_published_averages():
    # spec §5.3: the "average" column and the mean of the 15 benchmark averages.
    assert ALEXNET_MEAN_ERR["gaussian_noise"] == pytest.approx(0.886428, abs=5e-7)
    assert ALEXNET_MEAN_ERR["elastic_transform"] == pytest.approx(0.646056, abs=5e-7)
    assert ALEXNET_MEAN_ERR["saturate"] == pytest.approx(0.658248, abs=5e-7)
    assert np.mean([ALEXNET_MEAN_ERR[c] for c in BENCHMARK_CORRUPTIONS]) == pytest.approx(0.788993, abs=5e-7)
    assert len(BENCHMARK_CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4
    assert set(ALEXNET_ERR) == set(BENCHMARK_CORRUPTIONS) | set(EXTRA_CORRUPTIONS)
    assert all(tuple(ALEXNET_ERR[c]) == SEVERITIES for c in ALEXNET_ERR)
    assert ALEXNET_CLEAN_ERR == pytest.approx(1 - 0.56522)


# ------------------------------------------------------------------------------------------------ Wilson




@pytest.mark.parametrize("k,n", [(3, 16), (8, 16), (1, 50), (49, 50), (7, 1000), (500, 50000)])
def test_wilson_matches_hand_formula_and_score_equation(k, n):
    lo, hi = metrics.wilson_ci(k, n)
    assert (lo, hi) == pytest.approx(hand_wilson(k, n), abs=1e-12)
    # The bounds are the roots of the score equation (p_hat - p)^2 = z^2 p (1 - p) / n.
    p_hat = k / n
    for p in (lo, hi):
        assert (p_hat - p) ** 2 == pytest.approx(1.96**2 * p * (1 - p) / n, rel=1e-9, abs=1e-15)
    assert lo < p_hat < hi


def test_wilson_edges_and_vectors():
    assert metrics.wilson_ci(0, 16)[0] == 0.0 and metrics.wilson_ci(0, 16)[1] > 0.1
    assert metrics.wilson_ci(16, 16)[1] == pytest.approx(1.0) and metrics.wilson_ci(16, 16)[0] < 0.9
    assert all(math.isnan(v) for v in metrics.wilson_ci(0, 0))
    lo, hi = metrics.wilson_ci(np.array([3, 8]), np.array([16, 16]))
    assert lo.shape == (2,) and lo[1] == pytest.approx(hand_wilson(8, 16)[0])
    # wider z, wider interval
    assert np.subtract(*metrics.wilson_ci(3, 16, z=2.58)[::-1]) > np.subtract(*metrics.wilson_ci(3, 16)[::-1])


# --------------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_close_to_wilson_for_a_proportion():
    rng = np.random.default_rng(1)
    x = (rng.random(400) < 0.3).astype(float)
    a = metrics.bootstrap_ci(x, seed=5)
    assert a == metrics.bootstrap_ci(x, seed=5)
    y = rng.normal(size=100)  # continuous: another seed moves the percentiles
    assert metrics.bootstrap_ci(y, seed=5) == metrics.bootstrap_ci(y, seed=5) != metrics.bootstrap_ci(y, seed=6)
    lo, hi = a
    assert lo < x.mean() < hi
    w_lo, w_hi = metrics.wilson_ci(x.sum(), x.size)
    assert (hi - lo) == pytest.approx(w_hi - w_lo, rel=0.2)


def test_bootstrap_matrix_averages_cells_and_skips_missing_images():
    rng = np.random.default_rng(2)
    a = (rng.random(200) < 0.4).astype(float)
    # Two identical cells = one cell; a NaN (absent image) in a column is ignored, not counted as 0.
    assert metrics.bootstrap_ci(np.stack([a, a], 1), seed=0) == pytest.approx(metrics.bootstrap_ci(a, seed=0))
    b = np.stack([a, np.ones_like(a)], 1)
    b[:50, 1] = np.nan
    lo, hi = metrics.bootstrap_ci(b, seed=0)
    assert lo < (a.mean() + 1.0) / 2 < hi and lo > a.mean()
    # The generic path (any statistic) agrees in spirit with the fast mean path.
    lo2, hi2 = metrics.bootstrap_ci(a, statistic=np.mean, n_boot=1000, seed=0)
    assert lo2 == pytest.approx(metrics.bootstrap_ci(a, seed=0)[0], abs=0.03)
    assert metrics.bootstrap_ci(a, statistic=np.median, n_boot=200, seed=0)[1] in (0.0, 0.5, 1.0)


# ----------------------------------------------------------------------------------------------- McNemar


def paired(b, c, both=5, neither=4):
    """Correctness vectors with b images only A gets right and c only B gets right."""
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    bb = [0] * b + [1] * c + [1] * both + [0] * neither
    return np.array(a, bool), np.array(bb, bool)


@pytest.mark.parametrize("b,c", [(0, 3), (1, 6), (5, 5), (7, 2), (12, 11), (0, 24)])
def test_mcnemar_exact_matches_scipy_binomtest(b, c):
    stat, p = metrics.mcnemar(*paired(b, c))
    assert p == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    assert stat == min(b, c)
    assert metrics.discordant_counts(*paired(b, c)) == (b, c)


@pytest.mark.parametrize("b,c", [(30, 10), (20, 20), (100, 60)])
def test_mcnemar_chi_square_with_continuity(b, c):
    stat, p = metrics.mcnemar(*paired(b, c))
    hand = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    assert stat == pytest.approx(hand)
    assert p == pytest.approx(stats.chi2.sf(hand, 1))
    # large samples: close to the exact test
    assert p == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, abs=0.02)


def test_mcnemar_without_discordant_pairs_and_shape_errors():
    a = np.array([1, 0, 1], bool)
    assert metrics.mcnemar(a, a) == (0.0, 1.0)
    with pytest.raises(ValueError, match="paired"):
        metrics.mcnemar(a, a[:2])


# ------------------------------------------------------------------------------------------- calibration




def test_ece_matches_hand_binning():
    rng = np.random.default_rng(3)
    conf = rng.random(300).astype(np.float32)
    conf[:3] = [1.0, 1 / 15, 0.0]  # bin edges
    correct = rng.random(300) < conf
    assert metrics.ece(conf, correct) == pytest.approx(hand_ece(conf.astype(float), correct), abs=1e-12)
    assert metrics.ece(conf, correct, n_bins=10) == pytest.approx(hand_ece(conf.astype(float), correct, 10))


def test_ece_known_values():
    # Overconfident: confidence 0.9, half right -> 0.4. Perfect: conf 1 and right, conf 0.5 with 50 % right -> 0.
    assert metrics.ece(np.full(10, 0.9), np.arange(10) < 5) == pytest.approx(0.4)
    assert metrics.ece([1.0, 1.0, 0.5, 0.5], [1, 1, 1, 0]) == pytest.approx(0.0)
    assert math.isnan(metrics.ece([], []))


def test_nll_is_mean_negative_log_and_survives_zero():
    p = np.array([0.5, 0.25, 1.0], np.float32)
    assert metrics.nll(p) == pytest.approx((math.log(2) + math.log(4)) / 3)
    assert math.isfinite(metrics.nll([0.0, 0.5])) and metrics.nll([0.0]) == pytest.approx(-math.log(1e-12))


def test_cell_metrics_counts_errors():
    c1 = np.array([1, 0, 0, 1, 0, 0, 0, 1], bool)
    c5 = c1 | np.array([0, 1, 1, 0, 0, 0, 0, 0], bool)
    m = metrics.cell_metrics(c1, c5, np.full(8, 0.5), np.full(8, 0.5))
    assert m["n"] == 8 and m["top1_err"] == 5 / 8 and m["top5_err"] == 3 / 8
    assert (m["top1_ci_low"], m["top1_ci_high"]) == pytest.approx(hand_wilson(5, 8))
    assert m["nll"] == pytest.approx(math.log(2)) and m["ece"] == pytest.approx(abs(3 / 8 - 0.5))


# ---------------------------------------------------------------------------------------------- CE / mCE


def full_table(seed=0):
    """A hand-made 15 x 5 top-1 error table."""
    rng = np.random.default_rng(seed)
    return {c: {s: float(rng.uniform(0.2, 0.95)) for s in SEVERITIES} for c in BENCHMARK_CORRUPTIONS}


def test_mce_on_a_full_table_by_hand():
    errors = full_table()
    res = metrics.alexnet_mce(errors)
    hand_ce = {c: sum(errors[c].values()) / sum(ALEXNET_ERR[c].values()) for c in BENCHMARK_CORRUPTIONS}
    assert res.complete and res.value == pytest.approx(np.mean(list(hand_ce.values())), rel=1e-12)
    assert res.per_corruption == pytest.approx(hand_ce)
    # CE = ratio of severity means (spec §5.2) — the averaged normaliser gives the same number
    assert res.per_corruption["fog"] == pytest.approx(np.mean(list(errors["fog"].values())) / ALEXNET_MEAN_ERR["fog"])

    clean = 0.18
    rel = metrics.alexnet_mce(errors, clean, relative=True)
    hand_rel = [sum(e - clean for e in errors[c].values())
                / sum(a - ALEXNET_CLEAN_ERR for a in ALEXNET_ERR[c].values()) for c in BENCHMARK_CORRUPTIONS]
    assert rel.complete and rel.value == pytest.approx(np.mean(hand_rel), rel=1e-12)


def test_mce_scaled_alexnet_gives_the_scale_and_extras_are_ignored():
    errors = {c: {s: 0.5 * ALEXNET_ERR[c][s] for s in SEVERITIES} for c in BENCHMARK_CORRUPTIONS}
    assert metrics.alexnet_mce(errors).value == pytest.approx(0.5)
    errors["speckle_noise"] = {s: 0.99 for s in SEVERITIES}
    errors["my_plugin"] = {1: 0.1}
    assert metrics.alexnet_mce(errors).value == pytest.approx(0.5)
    alex = {c: dict(ALEXNET_ERR[c]) for c in BENCHMARK_CORRUPTIONS}
    assert metrics.alexnet_mce(alex, ALEXNET_CLEAN_ERR, relative=True).value == pytest.approx(1.0)


def test_mce_reproduces_published_resnet50():
    # spec §5.4: ResNet-50 per-corruption mean top-1 errors -> mCE 76.70, relative mCE ~105 (clean 23.87 %).
    mean_err = {"gaussian_noise": 0.7071, "shot_noise": 0.7297, "impulse_noise": 0.7619, "defocus_blur": 0.6125,
                "glass_blur": 0.7321, "motion_blur": 0.6133, "zoom_blur": 0.6376, "snow": 0.6747, "frost": 0.6186,
                "fog": 0.5417, "brightness": 0.3198, "contrast": 0.6094, "elastic_transform": 0.5475,
                "pixelate": 0.5521, "jpeg_compression": 0.4659}
    errors = {c: {s: e for s in SEVERITIES} for c, e in mean_err.items()}
    assert 100 * metrics.alexnet_mce(errors).value == pytest.approx(76.70, abs=0.01)
    assert metrics.alexnet_mce(errors).per_corruption["glass_blur"] == pytest.approx(0.8861, abs=1e-4)
    rel = metrics.alexnet_mce(errors, 0.2387, relative=True).value
    assert 1.0480 <= rel <= 1.0505


def test_partial_coverage_is_nan_with_a_flag():
    errors = full_table()
    del errors["fog"][3]
    res = metrics.alexnet_mce(errors)
    assert math.isnan(res.value) and not res.complete
    assert "fog" in res.coverage and "3" in res.coverage
    assert math.isnan(res.per_corruption["fog"]) and math.isfinite(res.per_corruption["snow"])
    # A severity-5-only evaluation (RobustBench style) is not an mCE either (trap 22).
    sev5 = {c: {5: 0.5} for c in BENCHMARK_CORRUPTIONS}
    assert math.isnan(metrics.alexnet_mce(sev5).value)
    three = {c: full_table()[c] for c in ("gaussian_noise", "defocus_blur", "contrast")}
    res = metrics.alexnet_mce(three)
    assert math.isnan(res.value) and "missing 12/15" in res.coverage
    assert math.isnan(metrics.alexnet_mce(full_table(), None, relative=True).value)
    assert math.isnan(metrics.corruption_error({1: 0.5}, ALEXNET_ERR["fog"]))


def test_baseline_mce_uses_shared_cells():
    model = {"fog": {1: 0.4, 3: 0.6}, "snow": {1: 0.3, 3: 0.5, 5: 0.7}, "mine": {2: 0.5}}
    base = {"fog": {1: 0.5, 3: 0.7}, "snow": {1: 0.6, 3: 0.6}}
    res = metrics.baseline_mce(model, base)
    hand = np.mean([(0.4 + 0.6) / (0.5 + 0.7), (0.3 + 0.5) / (0.6 + 0.6)])
    assert res.complete and res.value == pytest.approx(hand)
    assert res.coverage.startswith("2 corruptions") and "1,3" in res.coverage
    assert metrics.baseline_mce(base, base).value == pytest.approx(1.0)
    rel = metrics.baseline_mce(model, base, 0.2, 0.1, relative=True)
    hand_rel = np.mean([(0.4 + 0.6 - 0.4) / (0.5 + 0.7 - 0.2), (0.3 + 0.5 - 0.4) / (0.6 + 0.6 - 0.2)])
    assert rel.value == pytest.approx(hand_rel)
    assert math.isnan(metrics.baseline_mce({"fog": {1: 0.2}}, {"snow": {1: 0.3}}).value)
    zero = metrics.baseline_mce({"fog": {1: 0.2}}, {"fog": {1: 0.0}})
    assert math.isnan(zero.value) and "fog" in zero.coverage


def test_unnormalised_mce_averages_per_corruption_means():
    errors = {"a": {1: 0.2, 2: 0.4}, "b": {5: 0.9}}
    assert metrics.unnormalised_mce(errors) == pytest.approx((0.3 + 0.9) / 2)
    assert metrics.unnormalised_mce(errors, ["a"]) == pytest.approx(0.3)
    assert math.isnan(metrics.unnormalised_mce({}))
