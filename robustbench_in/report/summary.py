"""Summaries of loaded result rows: per model and dataset, per corruption, and paired tests between models.

The numbers a paper quotes (clean and mean corrupted errors with CIs, per-category means, calibration, CE /
mCE against AlexNet or a baseline model, effective robustness, McNemar p-values) as DataFrames, computed from
``load.load_results`` rows and the per-image records. Kept apart from loading (the file format) and from
tables and plots (the presentation) so each number has one definition whatever it is printed into. All errors
are fractions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from robustbench_in.report import metrics
from robustbench_in.report.alexnet import ALEXNET_CLEAN_ERR, ALEXNET_ERR, SEVERITIES
from robustbench_in.report.load import RecordReader, dedupe_cells

CLEAN = "clean"
FULL_VAL_SIZE = 50_000
CATEGORY_ORDER = ("noise", "blur", "weather", "digital")


def _categories(df: pd.DataFrame) -> list[str]:
    cats = [c for c in df["category"].dropna().unique() if c != CLEAN]
    known = [c for c in CATEGORY_ORDER if c in cats]
    return known + sorted(c for c in cats if c not in CATEGORY_ORDER)


def _error_matrix(rows: pd.DataFrame, reader: RecordReader, column: str) -> np.ndarray | None:
    """images x cells matrix of per-image errors (1 - correct), NaN where an image is absent from a cell."""
    series = []
    for _, row in rows.iterrows():
        rec = reader(row)
        if rec is None:
            return None
        series.append(pd.Series(1.0 - rec[column].to_numpy(dtype=np.float64), index=rec["image_id"].to_numpy()))
    if not series:
        return None
    return pd.concat(series, axis=1).to_numpy()


def _mean_error_ci(rows, reader, column, n_boot, seed) -> tuple[float, float]:
    mat = _error_matrix(rows, reader, column)
    if mat is None:
        return math.nan, math.nan
    return metrics.bootstrap_ci(mat, n_boot=n_boot, seed=seed)


def resolve_reference(df: pd.DataFrame, baseline: str | None) -> str:
    """``baseline`` if it is a model in ``df`` (else ValueError naming the models), or the first model by name."""
    models = sorted(df["model"].unique())
    if baseline is None:
        return models[0]
    if baseline not in models:
        raise ValueError(f"baseline model {baseline!r} is not in the results; models: {', '.join(models)}")
    return baseline


# ---------------------------------------------------------------------------- summary columns, step by step


def _clean_columns(c: pd.Series | None) -> dict:
    """Clean top-1 / top-5 error with the cell's Wilson CI, ECE and NLL (NaN without a clean cell)."""
    row = {}
    for k in ("top1", "top5"):
        row[f"clean_{k}_err"] = float(c[f"{k}_err"]) if c is not None else math.nan
        row[f"clean_{k}_ci_low"] = float(c[f"{k}_ci_low"]) if c is not None else math.nan
        row[f"clean_{k}_ci_high"] = float(c[f"{k}_ci_high"]) if c is not None else math.nan
    row["clean_ece"] = float(c["ece"]) if c is not None else math.nan
    row["clean_nll"] = float(c["nll"]) if c is not None else math.nan
    return row


def _corrupted_columns(corr: pd.DataFrame, reader: RecordReader, n_boot: int, seed: int) -> dict:
    """Mean corrupted top-1 / top-5 error over cells with a bootstrap-over-images CI, mean ECE and NLL."""
    row = {}
    for k in ("top1", "top5"):
        row[f"corr_{k}_err"] = float(corr[f"{k}_err"].mean()) if len(corr) else math.nan
        lo, hi = (_mean_error_ci(corr, reader, f"correct{k[-1]}", n_boot, seed) if len(corr)
                  else (math.nan, math.nan))
        row[f"corr_{k}_ci_low"], row[f"corr_{k}_ci_high"] = lo, hi
    row["corr_ece"] = float(corr["ece"].mean()) if len(corr) else math.nan
    row["corr_nll"] = float(corr["nll"].mean()) if len(corr) else math.nan
    return row


def _degradation_columns(clean_top5_err: float, corr_top5_err: float) -> dict:
    """Top-5 error increase from clean to the corrupted mean, absolute and relative to clean."""
    absolute = corr_top5_err - clean_top5_err
    return {"top5_degradation_abs": absolute,
            "top5_degradation_rel": absolute / clean_top5_err if clean_top5_err > 0 else math.nan}


def _category_means(corr: pd.DataFrame, categories: list[str]) -> dict:
    """Mean top-1 error of the corrupted cells of each category (NaN where the model has none)."""
    row = {}
    for cat in categories:
        sel = corr[corr["category"] == cat]
        row[f"top1_err_{cat}"] = float(sel["top1_err"].mean()) if len(sel) else math.nan
    return row


def _mce_columns(g: pd.DataFrame, errors: metrics.ErrorTable, clean_top1_err: float) -> dict:
    """AlexNet mCE and relative mCE (NaN unless complete, with the coverage saying why), unnormalised mCE."""
    mce = metrics.alexnet_mce(errors)
    rel = metrics.alexnet_mce(errors, clean_top1_err, relative=True)
    row = {"mCE": mce.value, "relative_mCE": rel.value,
           "mCE_coverage": mce.coverage if mce.complete else f"not computed: {mce.coverage}"}
    if mce.complete and not rel.complete:
        row["mCE_coverage"] += f"; relative mCE not computed: {rel.coverage}"
    row["mCE_comparable"] = bool(mce.complete and g["n"].min() >= FULL_VAL_SIZE)
    row["unnormalised_mCE"] = metrics.unnormalised_mce(errors)
    row["n_corruptions"] = len(errors)
    return row


def _baseline_columns(df: pd.DataFrame, dataset: str, baseline: str, errors: metrics.ErrorTable,
                      clean_top1_err: float) -> dict:
    """mCE and relative mCE normalised by the ``baseline`` model's errors on the severities both share."""
    base = df[(df["model"] == baseline) & (df["dataset"] == dataset)]
    base_clean = base.loc[base["corruption"] == CLEAN, "top1_err"]
    base_clean_err = float(base_clean.iloc[0]) if len(base_clean) else None
    b_err = metrics.error_table(base)
    bm = metrics.baseline_mce(errors, b_err)
    br = metrics.baseline_mce(errors, b_err, clean_top1_err, base_clean_err, relative=True)
    return {"baseline": baseline, "baseline_mCE": bm.value, "baseline_relative_mCE": br.value,
            "baseline_coverage": bm.coverage}


def _summary_row(df: pd.DataFrame, dataset: str, model: str, g: pd.DataFrame, categories: list[str],
                 baseline: str | None, reader: RecordReader, n_boot: int, seed: int) -> dict:
    """The summary row of one (model, dataset); columns in the order of summary.csv."""
    clean = g[g["corruption"] == CLEAN]
    corr = g[g["corruption"] != CLEAN]
    c = clean.iloc[0] if len(clean) else None
    row: dict = {"model": model, "dataset": dataset,
                 "n_images": int(c["n"]) if c is not None else int(g["n"].max()),
                 "n_corrupted_cells": len(corr)}
    row.update(_clean_columns(c))
    row.update(_corrupted_columns(corr, reader, n_boot, seed))
    row.update(_degradation_columns(row["clean_top5_err"], row["corr_top5_err"]))
    row.update(_category_means(corr, categories))
    errors = metrics.error_table(g)
    row.update(_mce_columns(g, errors, row["clean_top1_err"]))
    if baseline is not None:
        row.update(_baseline_columns(df, dataset, baseline, errors, row["clean_top1_err"]))
    return row


def summarize(
    df: pd.DataFrame,
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    reader: RecordReader | None = None,
) -> pd.DataFrame:
    """One row per (model, dataset): clean and mean corrupted errors with 95 % CIs, top-5 degradation,
    per-category means, calibration, AlexNet mCE / relative mCE (NaN unless complete), unnormalised mCE,
    and mCE normalised by ``baseline`` (another model in the same results) when given.

    Clean CIs are the cells' Wilson intervals; the mean-corrupted CIs are a bootstrap over images (from the
    records), which respects that every cell reuses the same images.
    """
    if baseline is not None:
        resolve_reference(df, baseline)
    reader = reader or RecordReader()
    df = dedupe_cells(df)
    categories = _categories(df)
    out = [_summary_row(df, dataset, model, g, categories, baseline, reader, n_boot, seed)
           for (dataset, model), g in df.groupby(["dataset", "model"], sort=True)]
    summary = pd.DataFrame(out)
    summary["effective_robustness"] = _effective_robustness(summary)
    return summary


def _effective_robustness(summary: pd.DataFrame) -> pd.Series:
    """Corrupted accuracy above the linear clean->corrupted fit across models of a dataset (>= 3 models)."""
    er = pd.Series(np.nan, index=summary.index)
    for _, g in summary.groupby("dataset"):
        x = 1.0 - g["clean_top1_err"].to_numpy()
        y = 1.0 - g["corr_top1_err"].to_numpy()
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 3 and np.ptp(x[ok]) > 0:
            slope, icept = np.polyfit(x[ok], y[ok], 1)
            er.loc[g.index[ok]] = y[ok] - (slope * x[ok] + icept)
    return er


# ------------------------------------------------------------------------------------------ per corruption


def corruption_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per (model, dataset, corruption): mean top-1/top-5 error over severities, severities used, AlexNet CE
    and relative CE (NaN unless all 5 severities), and CE vs ``baseline`` on the shared severities."""
    df = dedupe_cells(df)
    out = []
    for (dataset, model), g in df.groupby(["dataset", "model"], sort=True):
        clean = g.loc[g["corruption"] == CLEAN, "top1_err"]
        clean_err = float(clean.iloc[0]) if len(clean) else None
        errors = metrics.error_table(g)
        base_errors, base_clean = {}, None
        if baseline is not None:
            base = df[(df["model"] == baseline) & (df["dataset"] == dataset)]
            base_errors = metrics.error_table(base)
            bc = base.loc[base["corruption"] == CLEAN, "top1_err"]
            base_clean = float(bc.iloc[0]) if len(bc) else None
        for cname, cg in g[g["corruption"] != CLEAN].groupby("corruption", sort=False):
            e = errors[cname]
            rec = {"model": model, "dataset": dataset, "corruption": cname, "category": cg["category"].iloc[0],
                   "severities": ",".join(map(str, sorted(e))),
                   "top1_err": float(cg["top1_err"].mean()), "top5_err": float(cg["top5_err"].mean())}
            ref = ALEXNET_ERR.get(cname)
            rec["CE"] = metrics.corruption_error(e, ref, SEVERITIES) if ref else math.nan
            rec["relative_CE"] = (metrics.corruption_error(e, ref, SEVERITIES, clean_err, ALEXNET_CLEAN_ERR)
                                  if ref and clean_err is not None else math.nan)
            if baseline is not None:
                be = base_errors.get(cname, {})
                shared = sorted(s for s in e if s in be)
                rec["baseline"] = baseline
                rec["baseline_CE"] = metrics.corruption_error(e, be, shared) if shared else math.nan
            out.append(rec)
    return pd.DataFrame(out)


# -------------------------------------------------------------------------------------------- paired tests


def paired_tests(df: pd.DataFrame, reference: str | None = None,
                 reader: RecordReader | None = None) -> pd.DataFrame:
    """McNemar test of each model against ``reference`` (default: first model by name) on every shared cell.

    Images are paired by ``image_id``; only images present in both cells count.
    """
    reader = reader or RecordReader()
    df = dedupe_cells(df)
    reference = resolve_reference(df, reference)
    key = ["dataset", "corruption", "severity"]
    ref_rows = df[df["model"] == reference].set_index(key)
    out = []
    for _, row in df[df["model"] != reference].iterrows():
        k = tuple(row[c] for c in key)
        if k not in ref_rows.index:
            continue
        ref_row = ref_rows.loc[k]
        a, b = reader(row), reader(ref_row)
        rec = {"dataset": k[0], "corruption": k[1], "category": row["category"], "severity": int(k[2]),
               "model": row["model"], "reference": reference,
               "top1_err": float(row["top1_err"]), "reference_top1_err": float(ref_row["top1_err"])}
        if a is None or b is None:
            rec.update(n_paired=0, only_model_correct=np.nan, only_reference_correct=np.nan,
                       test="", statistic=np.nan, p_value=np.nan)
        else:
            m = a[["image_id", "correct1"]].merge(b[["image_id", "correct1"]], on="image_id",
                                                  suffixes=("_m", "_r"))
            ca, cb = m["correct1_m"].to_numpy(bool), m["correct1_r"].to_numpy(bool)
            n_b, n_c = metrics.discordant_counts(ca, cb)
            stat, p = metrics.mcnemar(ca, cb)
            rec.update(n_paired=len(m), only_model_correct=n_b, only_reference_correct=n_c,
                       test="exact" if 0 < n_b + n_c < metrics.MCNEMAR_EXACT_BELOW else "chi2",
                       statistic=stat, p_value=p)
        out.append(rec)
    return pd.DataFrame(out, columns=[
        "dataset", "corruption", "category", "severity", "model", "reference", "n_paired", "top1_err",
        "reference_top1_err", "only_model_correct", "only_reference_correct", "test", "statistic", "p_value"])
