"""Error statistics for the report: confidence intervals, paired tests, calibration, CE / mCE, and effective
robustness (Taori et al. 2020: a line fitted to logit-scaled accuracies over models, with bootstrap intervals).

Everything here works on plain numbers and arrays (per-image correctness, per-cell errors) so that every metric
can be recomputed from the files on disk. Errors and corruption errors are fractions (0.767, not 76.7);
tables multiply by 100 when they print.

CE / mCE follow Hendrycks & Dietterich (2019) as written down in ``docs/imagenet_c_spec.md`` §5.2: the sums run
over all five severities, and mCE over exactly the 15 benchmark corruptions. A partial evaluation is *not* an
mCE (trap 22), so the AlexNet-normalised functions return NaN together with a flag that says what is missing
instead of silently averaging whatever is there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from robustbench_in.report.alexnet import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR,
    BENCHMARK_CORRUPTIONS,
    SEVERITIES,
)

#: Below this many discordant pairs McNemar uses the exact binomial test, above it the chi-square form.
MCNEMAR_EXACT_BELOW = 25

# corruption -> severity -> error
ErrorTable = Mapping[str, Mapping[int, float]]


# --------------------------------------------------------------------------------------------- intervals


def wilson_ci(k, n, z: float = 1.96):
    """Wilson score interval for k successes out of n; arrays broadcast; NaN where n == 0.

    Preferred over the normal (Wald) interval because it stays inside [0, 1] and keeps its coverage at the
    small n and extreme error rates (a random-init model at 99.9 % error) that a testbed meets.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    low = np.where(n > 0, low, np.nan)
    high = np.where(n > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def resampled_column_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, k) column means of ``x`` (n, k) over images drawn with replacement, NaN = absent image.

    One draw of image indices per replicate is shared by every column, so columns that hold the same images
    (cells, or models evaluated on one set) stay paired. Done with resampling counts, chunked to bound memory.
    """
    n = x.shape[0]
    present = np.isfinite(x)
    filled = np.where(present, x, 0.0)
    all_present = bool(present.all())
    draws = []
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)  # (b, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = float(n) if all_present else counts @ present  # every resample holds n images
            draws.append((counts @ filled) / weight)  # (b, k)
        done += b
    return np.concatenate(draws)


def bootstrap_ci(
    values,
    statistic: Callable[[np.ndarray], float] | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval, resampling the rows (images) of ``values``; seeded, so reproducible.

    ``values`` is (n,) or (n, k): rows are the resampling units (images), columns e.g. cells that share those
    images, NaN where an image is absent from a cell. Without ``statistic`` the statistic is the mean over
    columns of each column's mean, computed with resampling weights (fast even for 50k images x 75 cells);
    resampling images rather than cells keeps the correlation between cells that reuse the same images.
    With ``statistic`` it is called on each resampled array (slower, any statistic).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    if statistic is None:
        col_means = resampled_column_means(x, n_boot, rng)  # (n_boot, k)
        boot = np.nanmean(col_means, axis=1) if col_means.shape[1] > 1 else col_means[:, 0]
    else:
        squeeze = np.asarray(values).ndim == 1
        boot = np.empty(n_boot)
        for i in range(n_boot):
            sample = x[rng.integers(0, n, size=n)]
            boot[i] = statistic(sample[:, 0] if squeeze else sample)
    alpha = (1.0 - confidence) / 2.0
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------ paired test


def discordant_counts(correct_a, correct_b) -> tuple[int, int]:
    """(b, c): images only model A gets right, images only model B gets right (same images, same order)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs paired per-image results: shapes {a.shape} and {b.shape} differ")
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def mcnemar(correct_a, correct_b, exact_below: int = MCNEMAR_EXACT_BELOW) -> tuple[float, float]:
    """McNemar's test of equal error rates on paired per-image correctness -> (statistic, p_value).

    Only discordant images carry information. With fewer than ``exact_below`` of them the exact two-sided
    binomial test (statistic = the smaller discordant count) is used, since the chi-square approximation is
    poor there; otherwise the chi-square statistic with continuity correction, max(|b - c| - 1, 0)^2 / (b + c),
    1 dof.
    No discordant image at all gives (0.0, 1.0).
    """
    b, c = discordant_counts(correct_a, correct_b)
    m = b + c
    if m == 0:
        return 0.0, 1.0
    if m < exact_below:
        k = min(b, c)
        p = min(1.0, 2.0 * float(stats.binom.cdf(k, m, 0.5)))
        return float(k), p
    statistic = max(abs(b - c) - 1.0, 0.0) ** 2 / m  # clamped: b == c must not look like a difference
    return float(statistic), float(stats.chi2.sf(statistic, df=1))


# ------------------------------------------------------------------------------------------- calibration


def ece(confidence, correct, n_bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width confidence bins of |B|/n * |accuracy(B) - conf(B)|.

    Bins are (i/n_bins, (i+1)/n_bins], the first one also holding 0 (Guo et al. 2017 convention).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    n = conf.size
    if n == 0:
        return math.nan
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    ok_sum = np.bincount(idx, weights=ok, minlength=n_bins)
    return float(np.sum(np.abs(ok_sum - conf_sum)) / n)


def nll(p_true, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class; p clipped at ``eps`` (float32 softmax underflows to 0)."""
    p = np.asarray(p_true, dtype=np.float64)
    if p.size == 0:
        return math.nan
    return float(np.mean(-np.log(np.clip(p, eps, 1.0))))


def cell_metrics(correct1, correct5, p_true=None, confidence=None, z: float = 1.96, n_bins: int = 15) -> dict:
    """Every per-cell number of a results row, from the per-image record columns."""
    c1 = np.asarray(correct1, dtype=bool)
    c5 = np.asarray(correct5, dtype=bool)
    n = int(c1.size)
    k1, k5 = int(n - c1.sum()), int(n - c5.sum())
    lo1, hi1 = wilson_ci(k1, n, z)
    lo5, hi5 = wilson_ci(k5, n, z)
    return {
        "n": n,
        "top1_err": k1 / n if n else math.nan,
        "top5_err": k5 / n if n else math.nan,
        "top1_ci_low": lo1, "top1_ci_high": hi1,
        "top5_ci_low": lo5, "top5_ci_high": hi5,
        "ece": ece(confidence, c1, n_bins) if confidence is not None else math.nan,
        "nll": nll(p_true) if p_true is not None else math.nan,
    }


# ------------------------------------------------------------------------------------ corruption errors


@dataclass(frozen=True)
class MCE:
    """An mCE-like average with its per-corruption terms and an honest coverage flag.

    ``value`` is NaN when ``complete`` is False; ``coverage`` says in words what was used or what is missing.
    """

    value: float
    per_corruption: dict[str, float] = field(default_factory=dict)
    complete: bool = False
    coverage: str = ""


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def corruption_error(
    model_err: Mapping[int, float],
    reference_err: Mapping[int, float],
    severities: Iterable[int] = SEVERITIES,
    model_clean: float | None = None,
    reference_clean: float | None = None,
) -> float:
    """CE = sum_s E_model / sum_s E_ref; with both clean errors, relative CE = sum_s (E - E_clean) / ditto.

    NaN unless every requested severity is present (and finite) for both; NaN when the denominator is not
    positive (relative CE of a reference that does not degrade is undefined).
    """
    sev = list(severities)
    if not sev:
        return math.nan
    if not all(_finite(model_err.get(s)) and _finite(reference_err.get(s)) for s in sev):
        return math.nan
    num = sum(float(model_err[s]) for s in sev)
    den = sum(float(reference_err[s]) for s in sev)
    relative = model_clean is not None or reference_clean is not None
    if relative:
        if not (_finite(model_clean) and _finite(reference_clean)):
            return math.nan
        num -= len(sev) * float(model_clean)
        den -= len(sev) * float(reference_clean)
    if den <= 0.0:
        return math.nan
    return num / den


def _describe_gaps(errors: ErrorTable, corruptions: Sequence[str], severities: Sequence[int]) -> list[str]:
    missing_c, partial = [], []
    for c in corruptions:
        have = {s for s, e in errors.get(c, {}).items() if _finite(e)}
        if not have & set(severities):
            missing_c.append(c)
        elif not set(severities) <= have:
            lack = sorted(set(severities) - have)
            partial.append(f"{c} (no severity {','.join(map(str, lack))})")
    gaps = []
    if missing_c:
        shown = ", ".join(missing_c[:4]) + (f" +{len(missing_c) - 4} more" if len(missing_c) > 4 else "")
        gaps.append(f"missing {len(missing_c)}/{len(corruptions)} corruptions: {shown}")
    if partial:
        shown = "; ".join(partial[:4]) + (f"; +{len(partial) - 4} more" if len(partial) > 4 else "")
        gaps.append(f"incomplete severities: {shown}")
    return gaps


def alexnet_mce(
    errors: ErrorTable,
    clean_err: float | None = None,
    relative: bool = False,
) -> MCE:
    """mCE (or relative mCE with ``relative=True`` and the model's clean error) normalised by AlexNet.

    Needs top-1 errors for all 15 benchmark corruptions x 5 severities; anything less returns NaN with a flag
    naming the gaps (spec §5.2, trap 22). Per-corruption CEs are still given for the complete corruptions.
    Extra corruptions in ``errors`` are ignored. Only comparable with published numbers when the errors come
    from the full 50,000-image validation set; that condition is the caller's to state.
    """
    per = {}
    for c in BENCHMARK_CORRUPTIONS:
        kwargs = {}
        if relative:
            kwargs = {"model_clean": clean_err, "reference_clean": ALEXNET_CLEAN_ERR}
        per[c] = corruption_error(errors.get(c, {}), ALEXNET_ERR[c], SEVERITIES, **kwargs)
    gaps = _describe_gaps(errors, BENCHMARK_CORRUPTIONS, SEVERITIES)
    if relative and not _finite(clean_err):
        gaps.append("no clean error for relative mCE")
    if gaps:
        return MCE(math.nan, per, False, "; ".join(gaps))
    values = np.array(list(per.values()))
    if not np.all(np.isfinite(values)):
        return MCE(math.nan, per, False, "undefined CE term (non-positive denominator)")
    return MCE(float(values.mean()), per, True, "15 corruptions x 5 severities")


def baseline_mce(
    errors: ErrorTable,
    baseline_errors: ErrorTable,
    clean_err: float | None = None,
    baseline_clean_err: float | None = None,
    relative: bool = False,
) -> MCE:
    """mCE normalised by another model evaluated on the same cells (e.g. a baseline in the same sweep).

    Uses every corruption both models have, and for each one the severities both have: a paired comparison on
    identical cells is meaningful at any coverage, unlike the AlexNet normalisation. ``coverage`` records what
    was used so that tables can say it.
    """
    per, used = {}, {}
    for c in errors:
        if c not in baseline_errors:
            continue
        sev = sorted(
            s for s in errors[c]
            if _finite(errors[c][s]) and _finite(baseline_errors[c].get(s))
        )
        if not sev:
            continue
        kwargs = {"model_clean": clean_err, "reference_clean": baseline_clean_err} if relative else {}
        per[c] = corruption_error(errors[c], baseline_errors[c], sev, **kwargs)
        used[c] = sev
    if not per:
        return MCE(math.nan, per, False, "no cell shared with the baseline")
    values = np.array(list(per.values()))
    if not np.all(np.isfinite(values)):
        bad = [c for c, v in per.items() if not math.isfinite(v)]
        return MCE(math.nan, per, False, f"undefined CE (baseline error sum not positive): {', '.join(bad)}")
    sev_sets = {tuple(s) for s in used.values()}
    sev_txt = ",".join(map(str, next(iter(sev_sets)))) if len(sev_sets) == 1 else "mixed"
    return MCE(float(values.mean()), per, True, f"{len(per)} corruptions x severities {sev_txt}")


def unnormalised_mce(errors: ErrorTable, corruptions: Iterable[str] | None = None) -> float:
    """Mean over corruptions of the mean error over the severities present: TEST's printed "mCE".

    Not comparable with the AlexNet-normalised mCE (spec §5.2); NaN when no corruption has an error.
    """
    names = list(errors) if corruptions is None else list(corruptions)
    means = []
    for c in names:
        vals = [float(e) for e in errors.get(c, {}).values() if _finite(e)]
        if vals:
            means.append(sum(vals) / len(vals))
    return float(np.mean(means)) if means else math.nan


def error_table(df, column: str = "top1_err") -> dict[str, dict[int, float]]:
    """{corruption: {severity: error}} from a results frame of one model and dataset (clean rows skipped)."""
    out: dict[str, dict[int, float]] = {}
    for row in df[df["corruption"] != "clean"][["corruption", "severity", column]].itertuples(index=False):
        out.setdefault(str(row[0]), {})[int(row[1])] = float(row[2])
    return out


# -------------------------------------------------------------------------------- effective robustness
#
# Taori et al. (NeurIPS 2020), "Measuring Robustness to Natural Distribution Shifts in Image Classification":
# over the models of a testbed, accuracy on a shifted set S is close to a straight line of the accuracy on the
# reference set (clean ImageNet val) once both are logit-scaled. With the least-squares line
#     logit(acc_S) = a * logit(acc_ref) + b,
# a model's effective robustness is what it gains over that baseline, in accuracy:
#     ER_S = acc_S - sigmoid(a * logit(acc_ref) + b).

#: accuracies are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before the logit, so 0 % and 100 % stay finite
LOGIT_EPS = 1e-4
#: fewer models than this give no fit (a line through two points leaves every model on it)
MIN_FIT_MODELS = 3


def logit(p, eps: float = LOGIT_EPS) -> np.ndarray:
    """log(p / (1 - p)) with p clipped away from 0 and 1 (a model at 0 % or 100 % must not give +-inf)."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def sigmoid(z) -> np.ndarray:
    """The inverse of ``logit``, in a form that neither overflows nor warns for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def _line_fits(x: np.ndarray, y: np.ndarray, min_models: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (slope, intercept) of y on x per row of (B, k) arrays, NaN entries left out; NaN where a
    row has fewer than ``min_models`` points or no spread in x. One closed form for the fit and its bootstrap."""
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(ok, x, 0.0).sum(axis=1) / n
        ym = np.where(ok, y, 0.0).sum(axis=1) / n
        dx = np.where(ok, x - xm[:, None], 0.0)
        dy = np.where(ok, y - ym[:, None], 0.0)
        sxx, sxy = (dx * dx).sum(axis=1), (dx * dy).sum(axis=1)
        slope = sxy / sxx
        intercept = ym - slope * xm
    bad = (n < min_models) | ~(sxx > 1e-12 * np.maximum(1.0, np.where(ok, x * x, 0.0).sum(axis=1)))
    return np.where(bad, np.nan, slope), np.where(bad, np.nan, intercept)


def logit_fit(acc_ref, acc_shift, eps: float = LOGIT_EPS, min_models: int = MIN_FIT_MODELS) -> tuple[float, float]:
    """(a, b) of logit(acc_shift) = a * logit(acc_ref) + b over the models with both accuracies (least squares);
    (NaN, NaN) with fewer than ``min_models`` of them or when every model has the same reference accuracy."""
    x = logit(acc_ref, eps)[None, :]  # NaN stays NaN through clip(), and is left out of the fit
    y = logit(acc_shift, eps)[None, :]
    slope, intercept = _line_fits(x, y, min_models)
    return float(slope[0]), float(intercept[0])


def effective_robustness(acc_ref, acc_shift, slope: float, intercept: float, eps: float = LOGIT_EPS) -> np.ndarray:
    """acc_shift - sigmoid(slope * logit(acc_ref) + intercept): accuracy on S above the fitted baseline."""
    acc_shift = np.asarray(acc_shift, dtype=np.float64)
    return acc_shift - sigmoid(slope * logit(acc_ref, eps) + intercept)


@dataclass(frozen=True)
class ERInterval:
    """Percentile bootstrap intervals of one shift set: per model ER and shifted accuracy, and the fit's a, b."""

    er_low: np.ndarray
    er_high: np.ndarray
    acc_low: np.ndarray
    acc_high: np.ndarray
    slope: tuple[float, float]
    intercept: tuple[float, float]
    n_valid: int  # replicates with a fit (a replicate whose reference accuracies all tie has none)


def cell_mean_if_paired(correct: np.ndarray) -> np.ndarray | None:
    """Per-image mean over the last axis (cells) when every image is in all or none of the cells, else None.

    Then the mean over cells of resampled cell accuracies equals the resampled mean of these per-image means,
    so 75 ImageNet-C cells bootstrap as cheaply as one.
    """
    present = np.isfinite(correct)
    if not np.array_equal(present.all(axis=-1), present.any(axis=-1)):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, correct, 0.0).sum(axis=-1) / present.sum(axis=-1)


def _quantiles(boot: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column percentile interval of (B, k) replicates, NaN replicates left out (NaN if none is left)."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.full(boot.shape[1], np.nan), np.full(boot.shape[1], np.nan)
    for j in range(boot.shape[1]):
        col = boot[:, j][np.isfinite(boot[:, j])]
        if col.size:
            low[j], high[j] = np.quantile(col, [alpha, 1.0 - alpha])
    return low, high


def bootstrap_effective_robustness(ref_correct, shift_correct, n_boot: int = 1000, confidence: float = 0.95,
                                   seed: int = 0, eps: float = LOGIT_EPS,
                                   min_models: int = MIN_FIT_MODELS) -> ERInterval:
    """Bootstrap intervals of ER_S for k models: per-image correctness (1/0, NaN = absent) on the reference set,
    ``ref_correct`` (n_ref, k), and on S, ``shift_correct`` (n_S, k) or (n_S, k, cells) (acc_S = mean over cells).

    Each replicate resamples the images of both sets (independently; one draw per set shared by all models and
    cells, which keeps the models paired), recomputes the accuracies, refits the logit line and recomputes ER.
    Seeded, so the same inputs give the same intervals.
    """
    ref = np.asarray(ref_correct, dtype=np.float64)
    shift = np.asarray(shift_correct, dtype=np.float64)
    k = ref.shape[1]
    if shift.ndim == 3:
        paired = cell_mean_if_paired(shift)
        shift = shift if paired is None else paired
    rng = np.random.default_rng(seed)
    acc_ref = resampled_column_means(ref, n_boot, rng)  # (B, k)
    acc_s = resampled_column_means(shift.reshape(shift.shape[0], -1), n_boot, rng)
    if shift.ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a model with no image left in a replicate: NaN
            acc_s = np.nanmean(acc_s.reshape(n_boot, k, shift.shape[2]), axis=2)
    x, y = logit(acc_ref, eps), logit(acc_s, eps)
    slope, intercept = _line_fits(x, y, min_models)
    er = acc_s - sigmoid(slope[:, None] * x + intercept[:, None])
    er_low, er_high = _quantiles(er, confidence)
    acc_low, acc_high = _quantiles(acc_s, confidence)
    (a_lo,), (a_hi,) = _quantiles(slope[:, None], confidence)
    (b_lo,), (b_hi,) = _quantiles(intercept[:, None], confidence)
    return ERInterval(er_low, er_high, acc_low, acc_high, (float(a_lo), float(a_hi)), (float(b_lo), float(b_hi)),
                      int(np.isfinite(slope).sum()))
