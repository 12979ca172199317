"""Error statistics for the report: confidence intervals, paired tests, calibration, CE / mCE.

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
                col_means = (counts @ filled) / weight  # (b, k)
            draws.append(np.nanmean(col_means, axis=1) if col_means.shape[1] > 1 else col_means[:, 0])
            done += b
        boot = np.concatenate(draws)
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
