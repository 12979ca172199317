"""Summaries of loaded result rows: per model and dataset, per corruption, and paired tests between models.

The numbers a paper quotes (clean and mean corrupted errors with CIs, per-category means, calibration, CE /
mCE against AlexNet or a baseline model, effective robustness, McNemar p-values) as DataFrames, computed from
``load.load_results`` rows and the per-image records. Kept apart from loading (the file format) and from
tables and plots (the presentation) so each number has one definition whatever it is printed into. All errors
are fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    reference_dataset: str | None = "auto",
) -> pd.DataFrame:
    """One row per (model, dataset): clean and mean corrupted errors with 95 % CIs, top-5 degradation,
    per-category means, calibration, AlexNet mCE / relative mCE (NaN unless complete), unnormalised mCE,
    mCE normalised by ``baseline`` (another model in the same results) when given, and the effective robustness
    (Taori et al., point estimate; ``shift_report`` has the intervals) of the shift set the row's data make up.

    Clean CIs are the cells' Wilson intervals; the mean-corrupted CIs are a bootstrap over images (from the
    records), which respects that every cell reuses the same images.
    """
    if baseline is not None:
        resolve_reference(df, baseline)
    reader = reader or RecordReader()
    cells = dedupe_cells(df)
    categories = _categories(cells)
    out = [_summary_row(cells, dataset, model, g, categories, baseline, reader, n_boot, seed)
           for (dataset, model), g in cells.groupby(["dataset", "model"], sort=True)]
    summary = pd.DataFrame(out)
    # all rows: a set evaluated under both protocols is two shift sets, and no single summary row holds either
    summary["effective_robustness"] = _effective_robustness(df, summary, reference_dataset)
    return summary


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


# ------------------------------------------------------------------------------------- distribution shifts

#: clean ImageNet val as the engine names it: the x axis of effective robustness (``report.reference_dataset=auto``)
REFERENCE_DATASETS = ("imagenet_folder", "imagenet_flat")
#: natural-shift test sets (spec §6.3) whose clean cell is a shift set, in the order papers print them
NATURAL_SHIFTS = ("imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a", "objectnet")
IMAGENET_C_FILES = "imagenet_c_folder"  # the released ImageNet-C tree (or an export): corrupted cells from files
ON_THE_FLY_C = "imagenet_c"  # the shift set made of the reference dataset's own corrupted cells
_CELL_KEY = ["model", "dataset", "corruption", "severity"]


@dataclass
class ShiftSet:
    """One shift set S: its name in tables, the dataset its cells come from, and its cells for every model.
    ``corrupted``: acc_S is the mean over corrupted cells (ImageNet-C) instead of one clean cell."""

    name: str
    dataset: str
    rows: pd.DataFrame
    corrupted: bool
    protocol: str = ""


@dataclass
class ShiftReport:
    """The shifts table (one row per model), one fit row per shift set, and notes for the reader."""

    reference: str | None
    table: pd.DataFrame
    fits: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    n_boot: int = 0
    seed: int = 0


def _first_per_cell(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, silently (``dedupe_cells`` has already warned about repeats for the whole report)."""
    return rows.drop_duplicates(subset=_CELL_KEY, keep="first")


def _text_column(df: pd.DataFrame, column: str) -> pd.Series:
    """A string column as str with "" where absent (older results have no ``source`` / ``protocol``)."""
    if column not in df:
        return pd.Series("", index=df.index, dtype=object)
    return df[column].fillna("").astype(str)


def resolve_reference_dataset(df: pd.DataFrame, choice: str | None = "auto") -> str | None:
    """The dataset whose clean cell is clean ImageNet val: ``choice``, or for "auto" the one of
    REFERENCE_DATASETS with a clean cell for the most models (the first on a tie); None when none has one."""
    clean = df[df["corruption"] == CLEAN]
    if choice not in (None, "", "auto"):
        if choice not in set(clean["dataset"]):
            have = ", ".join(sorted(clean["dataset"].unique())) or "none"
            raise ValueError(f"report.reference_dataset={choice!r} has no clean cell in the results; data sets "
                             f"with one: {have}")
        return str(choice)
    counts = {d: clean.loc[clean["dataset"] == d, "model"].nunique() for d in REFERENCE_DATASETS}
    present = [d for d in REFERENCE_DATASETS if counts[d]]
    return max(present, key=lambda d: counts[d]) if present else None


def shift_sets(df: pd.DataFrame, reference: str | None) -> list[ShiftSet]:
    """Every shift set present: each natural-shift set's clean cell (one set per protocol when rows of both
    exist), the reference's on-the-fly corrupted cells, and the file cells of imagenet_c_folder."""
    sets = []
    for ds in (d for d in NATURAL_SHIFTS if d != reference):
        clean = df[(df["dataset"] == ds) & (df["corruption"] == CLEAN)]
        protocol = _text_column(clean, "protocol")
        kinds = sorted(protocol.unique())
        for proto in kinds:
            name = ds if len(kinds) == 1 else f"{ds}_{proto or 'unrecorded'}"
            sets.append(ShiftSet(name, ds, _first_per_cell(clean[protocol == proto]), False, proto))
    if reference is not None and reference != IMAGENET_C_FILES:
        on_the_fly = ((df["dataset"] == reference) & (df["corruption"] != CLEAN)
                      & (_text_column(df, "source") != "files"))
        if on_the_fly.any():
            sets.append(ShiftSet(ON_THE_FLY_C, reference, _first_per_cell(df[on_the_fly]), True))
    files = df[(df["dataset"] == IMAGENET_C_FILES) & (df["corruption"] != CLEAN)]
    if len(files):
        sets.append(ShiftSet(IMAGENET_C_FILES, IMAGENET_C_FILES, _first_per_cell(files), True))
    return sets


def _reference_rows(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The reference clean cell of each model, indexed by model."""
    rows = df[(df["dataset"] == reference) & (df["corruption"] == CLEAN)]
    return _first_per_cell(rows).set_index("model")


def _shared_cells(s: ShiftSet) -> tuple[list[tuple[str, int]], str]:
    """The (corruption, severity) cells of S that every model has (so acc_S is one distribution for all of them),
    and a note when some model has cells the others lack."""
    if not s.corrupted:
        return [(CLEAN, 0)], ""
    per_model = [set(zip(g["corruption"], g["severity"].astype(int))) for _, g in s.rows.groupby("model")]
    shared, every = set.intersection(*per_model), set.union(*per_model)
    note = ""
    if shared != every:
        note = (f"{s.name}: accuracy is the mean over the {len(shared)} cells every model has "
                f"({len(every)} cells in all).")
    return sorted(shared), note


def _set_accuracy(s: ShiftSet, cells: list[tuple[str, int]]) -> pd.Series:
    """acc_S per model from the result rows: 1 - top-1 error, averaged over the shared cells."""
    key = list(zip(s.rows["corruption"], s.rows["severity"].astype(int)))
    used = s.rows[[k in set(cells) for k in key]]
    return (1.0 - used.groupby("model")["top1_err"].mean()).rename(s.name)


def _fit_set(acc_ref: pd.Series, acc_s: pd.Series) -> tuple[list[str], float, float, pd.Series]:
    """The models with both accuracies, the logit fit (a, b) over them, and their effective robustness."""
    both = acc_ref.index.intersection(acc_s.index)
    both = [m for m in sorted(both) if np.isfinite(acc_ref[m]) and np.isfinite(acc_s[m])]
    a, b = metrics.logit_fit(acc_ref[both].to_numpy(), acc_s[both].to_numpy())
    er = pd.Series(metrics.effective_robustness(acc_ref[both].to_numpy(), acc_s[both].to_numpy(), a, b),
                   index=both, dtype=float)
    return both, a, b, er


def _effective_robustness(df: pd.DataFrame, summary: pd.DataFrame, reference_dataset: str | None) -> pd.Series:
    """Each summary row's ER (point estimate) on the shift set its (model, dataset) makes up: the reference's
    corrupted cells, a natural-shift set's clean cell, or imagenet_c_folder's files; NaN elsewhere."""
    er = pd.Series(np.nan, index=summary.index)
    reference = resolve_reference_dataset(df, reference_dataset)
    if reference is None:
        return er
    acc_ref = 1.0 - _reference_rows(df, reference)["top1_err"]
    sets = shift_sets(df, reference)
    for s in sets:
        if sum(t.dataset == s.dataset for t in sets) > 1:  # a set split by protocol: no single row to hold it
            continue
        _, _, _, values = _fit_set(acc_ref, _set_accuracy(s, _shared_cells(s)[0]))
        for model, v in values.items():
            er[(summary["model"] == model) & (summary["dataset"] == s.dataset)] = v
    return er


def _correct_series(row, reader: RecordReader) -> pd.Series | None:
    """Per-image top-1 correctness (1.0 / 0.0) of one cell indexed by image id, or None without records."""
    rec = reader(row)
    if rec is None:
        return None
    return pd.Series(rec["correct1"].to_numpy(dtype=np.float64), index=rec["image_id"].to_numpy())


def _correct_matrix(rows_per_model: list[list], reader: RecordReader) -> np.ndarray | None:
    """(images, models) per-image correctness over the union of image ids (NaN = absent), a model's cells
    averaged per image when they hold the same images, else (images, models, cells); None without records."""
    series = [[_correct_series(r, reader) for r in rows] for rows in rows_per_model]
    if not series or any(x is None for ss in series for x in ss):
        return None
    index = pd.Index(np.unique(np.concatenate([x.index.to_numpy() for ss in series for x in ss])))

    def aligned(ss: list[pd.Series]) -> np.ndarray:
        return np.stack([x.reindex(index).to_numpy(dtype=np.float64) for x in ss], axis=1)

    means = []
    for ss in series:  # one model at a time: 75 cells x 50k images stay one model's worth of memory
        m = metrics.cell_mean_if_paired(aligned(ss))
        if m is None:
            return np.stack([aligned(x) for x in series], axis=1)
        means.append(m)
    return np.stack(means, axis=1)


def _bootstrap_set(s: ShiftSet, cells: list[tuple[str, int]], models: list[str], ref_rows: pd.DataFrame,
                   reader: RecordReader, n_boot: int, seed: int) -> metrics.ERInterval | None:
    """ER and acc_S intervals of ``models`` on S from the per-image records; None when some are missing."""
    if not models:
        return None
    ref = _correct_matrix([[ref_rows.loc[m]] for m in models], reader)
    by_cell = s.rows.set_index(["model", "corruption", "severity"])
    shift = _correct_matrix([[by_cell.loc[(m, c, sev)] for c, sev in cells] for m in models], reader)
    if ref is None or shift is None:
        return None
    return metrics.bootstrap_effective_robustness(ref, shift, n_boot=n_boot, seed=seed)


def _mce_for(s: ShiftSet, summary: pd.DataFrame, models: pd.Index) -> pd.DataFrame:
    """The set's mCE per model from the summary: AlexNet-normalised when every model has it, else unnormalised."""
    rows = summary[summary["dataset"] == s.dataset].set_index("model").reindex(models)
    alexnet = "mCE" in rows and np.isfinite(rows["mCE"].to_numpy(dtype=float)).all()
    column = "mCE" if alexnet else "unnormalised_mCE"
    values = rows[column] if column in rows else pd.Series(np.nan, index=models)
    return pd.DataFrame({f"{s.name}_mCE": values.astype(float),
                         f"{s.name}_mCE_kind": "alexnet" if alexnet else "unnormalised"}, index=models)


def _accuracy_columns(s: ShiftSet, acc_s: pd.Series) -> pd.DataFrame:
    """acc_S per model with its CI (a natural set's Wilson interval; ImageNet-C's comes from the bootstrap)."""
    cols = pd.DataFrame({f"{s.name}_top1_acc": acc_s}, index=acc_s.index)
    if s.corrupted:
        cols[f"{s.name}_top1_ci_low"] = cols[f"{s.name}_top1_ci_high"] = np.nan
        return cols
    rows = s.rows.set_index("model").reindex(acc_s.index)
    cols[f"{s.name}_top1_ci_low"] = 1.0 - rows["top1_ci_high"].astype(float)
    cols[f"{s.name}_top1_ci_high"] = 1.0 - rows["top1_ci_low"].astype(float)
    cols[f"{s.name}_protocol"] = _text_column(rows, "protocol")
    return cols


def _shift_columns(s: ShiftSet, reference: str, ref_rows: pd.DataFrame, summary: pd.DataFrame,
                   reader: RecordReader, n_boot: int, seed: int) -> tuple[pd.DataFrame, dict, list[str]]:
    """One shift set's columns of the shifts table (by model), its fit row, and notes."""
    cells, note = _shared_cells(s)
    notes = [note] if note else []
    acc_s = _set_accuracy(s, cells)
    both, a, b, er = _fit_set(1.0 - ref_rows["top1_err"], acc_s)
    cols = _accuracy_columns(s, acc_s)
    if s.corrupted:
        cols = cols.join(_mce_for(s, summary, cols.index))
    cols[f"{s.name}_ER"] = er.reindex(cols.index)
    cols[f"{s.name}_ER_ci_low"] = cols[f"{s.name}_ER_ci_high"] = np.nan
    boot = _bootstrap_set(s, cells, both, ref_rows, reader, n_boot, seed)
    if boot is not None:
        cols.loc[both, f"{s.name}_ER_ci_low"], cols.loc[both, f"{s.name}_ER_ci_high"] = boot.er_low, boot.er_high
        if s.corrupted:
            cols.loc[both, f"{s.name}_top1_ci_low"] = boot.acc_low
            cols.loc[both, f"{s.name}_top1_ci_high"] = boot.acc_high
    if len(both) < metrics.MIN_FIT_MODELS:
        have = f"{len(both)} {'has' if len(both) == 1 else 'have'}"
        notes.append(f"{s.name}: effective robustness needs >= {metrics.MIN_FIT_MODELS} models with both "
                     f"{reference} clean and {s.name} accuracies; {have} both, so it is left empty.")
    elif boot is None:
        notes.append(f"{s.name}: no bootstrap interval (per-image records missing for some cell).")
    nan2 = (math.nan, math.nan)
    fit = {"shift_set": s.name, "dataset": s.dataset, "protocol": s.protocol, "n_cells": len(cells),
           "n_models": len(both), "slope": a, "intercept": b,
           "slope_ci_low": (boot.slope if boot else nan2)[0], "slope_ci_high": (boot.slope if boot else nan2)[1],
           "intercept_ci_low": (boot.intercept if boot else nan2)[0],
           "intercept_ci_high": (boot.intercept if boot else nan2)[1]}
    return cols, fit, notes


def _reference_columns(models: list[str], reference: str, ref_rows: pd.DataFrame) -> pd.DataFrame:
    """Clean ImageNet top-1 accuracy per model with its Wilson interval (from the error's)."""
    rows = ref_rows.reindex(models)
    return pd.DataFrame({"reference_dataset": reference,
                         "clean_top1_acc": 1.0 - rows["top1_err"].astype(float),
                         "clean_top1_ci_low": 1.0 - rows["top1_ci_high"].astype(float),
                         "clean_top1_ci_high": 1.0 - rows["top1_ci_low"].astype(float)}, index=pd.Index(models))


def shift_report(df: pd.DataFrame, summary: pd.DataFrame, reference_dataset: str | None = "auto",
                 n_boot: int = 1000, seed: int = 0, reader: RecordReader | None = None) -> ShiftReport:
    """The distribution-shift table: per model clean ImageNet accuracy, each shift set's accuracy, the ImageNet-C
    mCE and the effective robustness on each set (Taori et al. 2020) with 95 % bootstrap-over-images intervals.

    Empty (with a note when shift sets exist) without a reference; a set with fewer than 3 models keeps NaN ER.
    """
    reader = reader or RecordReader()
    reference = resolve_reference_dataset(df, reference_dataset)
    sets = shift_sets(df, reference)
    if reference is None or not sets:
        notes = [] if not sets else [
            f"No effective robustness: no clean ImageNet val cell ({' or '.join(REFERENCE_DATASETS)}) in the "
            "results; evaluate one with suite=clean, or name another with report.reference_dataset=..."]
        return ShiftReport(reference, pd.DataFrame(), pd.DataFrame(), notes, n_boot, seed)
    ref_rows = _reference_rows(df, reference)
    models = sorted(set(ref_rows.index).union(*(set(s.rows["model"]) for s in sets)))
    table, fits, notes = _reference_columns(models, reference, ref_rows), [], []
    for s in sets:
        cols, fit, set_notes = _shift_columns(s, reference, ref_rows, summary, reader, n_boot, seed)
        table = table.join(cols)
        fits.append(fit)
        notes += set_notes
    table = table.rename_axis("model").reset_index()
    return ShiftReport(reference, table, pd.DataFrame(fits), notes, n_boot, seed)
