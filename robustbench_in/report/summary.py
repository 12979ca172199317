"""Reports from results on disk: tidy cell table, per-model summary, paired tests, LaTeX / Markdown, plots.

Reads only what the engine wrote (``results.csv`` per run directory and the per-image Parquet records next to
it), never the engine itself, so a report can be rebuilt anywhere from copied result folders and several
sweeps can be merged. All errors are fractions in the CSV / Parquet outputs; LaTeX and Markdown print percent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from robustbench_in import metrics
from robustbench_in.alexnet import ALEXNET_CLEAN_ERR, ALEXNET_ERR, ALEXNET_SOURCE, SEVERITIES
from robustbench_in.results import atomic_write

RESULTS_FILE = "results.csv"
CLEAN = "clean"
FULL_VAL_SIZE = 50_000
CATEGORY_ORDER = ("noise", "blur", "weather", "digital")

STR_COLUMNS = (
    "model", "dataset", "corruption", "category", "preprocessing", "jpeg_mode", "config_hash", "cell_id",
    "records", "device", "versions",
)
RECORD_COLUMNS = ("image_id", "correct1", "correct5", "p_true", "confidence")

ALEXNET_NOTE = (
    "CE/mCE/relative mCE are normalised by AlexNet's published ImageNet-C top-1 errors "
    f"({ALEXNET_SOURCE}); they are only meaningful on the full 50,000-image ImageNet validation set "
    "with all 5 severities of the 15 benchmark corruptions, and are left empty otherwise."
)


# ------------------------------------------------------------------------------------------------ loading


def find_results_files(paths: Iterable[Path | str]) -> list[Path]:
    """Every results.csv under the given directories (any depth) or given directly; each file once, sorted."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS_FILE:
            found.add(p.resolve())
        elif p.is_dir():
            found.update(f.resolve() for f in p.rglob(RESULTS_FILE) if f.is_file())
        else:
            raise FileNotFoundError(f"not a results directory or {RESULTS_FILE}: {p}")
    return sorted(found)


def load_results(paths: Sequence[Path | str], recompute: bool = False) -> pd.DataFrame:
    """All result rows under ``paths``, concatenated; a cell_id seen twice is kept once (first file wins).

    Adds ``results_dir`` (absolute, where the row's records live). With ``recompute`` the per-cell numbers
    (errors, Wilson CIs, ECE, NLL) are recomputed from the per-image records instead of trusted from the CSV.
    """
    files = find_results_files(paths)
    if not files:
        raise FileNotFoundError(f"no {RESULTS_FILE} found under: {', '.join(map(str, paths))}")
    frames = []
    for f in files:
        # Strings stay verbatim ("none", "NA" are legitimate settings); numbers read "" / "nan" as missing.
        columns = pd.read_csv(f, nrows=0).columns
        part = pd.read_csv(f, dtype={c: "string" for c in STR_COLUMNS if c in columns}, keep_default_na=False,
                           na_values={c: ["", "nan", "NaN", "NA"] for c in columns if c not in STR_COLUMNS})
        if part.empty:
            continue
        part["results_dir"] = str(f.parent)
        frames.append(part)
    if not frames:
        raise FileNotFoundError(f"every {RESULTS_FILE} under {', '.join(map(str, paths))} is empty")
    df = pd.concat(frames, ignore_index=True)
    for c in STR_COLUMNS:
        if c in df:
            df[c] = df[c].astype(object)
    df["severity"] = df["severity"].astype(int)
    n_before = len(df)
    df = df.drop_duplicates(subset="cell_id", keep="first").reset_index(drop=True)
    if len(df) < n_before:
        warnings.warn(f"dropped {n_before - len(df)} duplicate cell(s) found in more than one results file",
                      stacklevel=2)
    if recompute:
        df = _recompute_from_records(df)
    return _fill_missing_metrics(df)


def _fill_missing_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Older or foreign results may lack CI / calibration columns: Wilson CIs from n and the error, else NaN."""
    n = df["n"].to_numpy(dtype=float)
    for k in ("top1", "top5"):
        lo, hi = metrics.wilson_ci(np.round(df[f"{k}_err"].to_numpy(dtype=float) * n), n)
        for col, fallback in ((f"{k}_ci_low", lo), (f"{k}_ci_high", hi)):
            df[col] = df[col].fillna(pd.Series(fallback, index=df.index)) if col in df else fallback
    for c in ("ece", "nll"):
        if c not in df:
            df[c] = np.nan
    return df


class RecordReader:
    """Per-image records of result rows, read once and cached (the summary and the paired tests share them)."""

    def __init__(self) -> None:
        self._cache: dict[str, pd.DataFrame | None] = {}

    def path(self, row) -> Path | None:
        rel = row.get("records") if hasattr(row, "get") else getattr(row, "records", None)
        if rel is None or (isinstance(rel, float) and math.isnan(rel)) or str(rel) == "":
            return None
        p = Path(str(rel))
        return p if p.is_absolute() else Path(str(row["results_dir"])) / p

    def __call__(self, row) -> pd.DataFrame | None:
        p = self.path(row)
        if p is None:
            return None
        key = str(p)
        if key not in self._cache:
            if not p.is_file():
                warnings.warn(f"records missing for cell {row['cell_id']}: {p}", stacklevel=2)
                self._cache[key] = None
            else:
                names = pq.read_schema(p).names
                rec = pd.read_parquet(p, columns=[c for c in RECORD_COLUMNS if c in names])
                missing = [c for c in ("image_id", "correct1", "correct5") if c not in rec]
                if missing:
                    raise ValueError(f"records {p} lack column(s) {missing}")
                if rec["image_id"].duplicated().any():
                    raise ValueError(f"records {p} repeat image ids")
                self._cache[key] = rec
        return self._cache[key]


def _recompute_from_records(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    reader = RecordReader()
    for i, row in df.iterrows():
        rec = reader(row)
        if rec is None:
            continue
        m = metrics.cell_metrics(
            rec["correct1"].to_numpy(), rec["correct5"].to_numpy(),
            rec["p_true"].to_numpy() if "p_true" in rec else None,
            rec["confidence"].to_numpy() if "confidence" in rec else None,
        )
        for k, v in m.items():
            df.at[i, k] = v
    return df


def _dedupe_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, corruption, severity); a repeat (other config) is dropped with a warning."""
    key = ["model", "dataset", "corruption", "severity"]
    dup = df.duplicated(subset=key, keep="first")
    if dup.any():
        cells = df.loc[dup, key].astype(str).agg("/".join, axis=1).tolist()
        warnings.warn(
            f"{int(dup.sum())} cell(s) evaluated more than once with different settings "
            f"(first kept): {', '.join(cells[:5])}", stacklevel=3)
        df = df.loc[~dup]
    return df


# ------------------------------------------------------------------------------------------------ summary


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


def _resolve_reference(df: pd.DataFrame, baseline: str | None) -> str:
    models = sorted(df["model"].unique())
    if baseline is None:
        return models[0]
    if baseline not in models:
        raise ValueError(f"baseline model {baseline!r} is not in the results; models: {', '.join(models)}")
    return baseline


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
        _resolve_reference(df, baseline)
    reader = reader or RecordReader()
    df = _dedupe_cells(df)
    categories = _categories(df)
    out = []
    for (dataset, model), g in df.groupby(["dataset", "model"], sort=True):
        clean = g[g["corruption"] == CLEAN]
        corr = g[g["corruption"] != CLEAN]
        c = clean.iloc[0] if len(clean) else None
        row: dict = {"model": model, "dataset": dataset,
                     "n_images": int(c["n"]) if c is not None else int(g["n"].max()),
                     "n_corrupted_cells": len(corr)}
        for k in ("top1", "top5"):
            row[f"clean_{k}_err"] = float(c[f"{k}_err"]) if c is not None else math.nan
            row[f"clean_{k}_ci_low"] = float(c[f"{k}_ci_low"]) if c is not None else math.nan
            row[f"clean_{k}_ci_high"] = float(c[f"{k}_ci_high"]) if c is not None else math.nan
        row["clean_ece"] = float(c["ece"]) if c is not None else math.nan
        row["clean_nll"] = float(c["nll"]) if c is not None else math.nan
        for k in ("top1", "top5"):
            row[f"corr_{k}_err"] = float(corr[f"{k}_err"].mean()) if len(corr) else math.nan
            lo, hi = (_mean_error_ci(corr, reader, f"correct{k[-1]}", n_boot, seed) if len(corr)
                      else (math.nan, math.nan))
            row[f"corr_{k}_ci_low"], row[f"corr_{k}_ci_high"] = lo, hi
        row["corr_ece"] = float(corr["ece"].mean()) if len(corr) else math.nan
        row["corr_nll"] = float(corr["nll"].mean()) if len(corr) else math.nan
        row["top5_degradation_abs"] = row["corr_top5_err"] - row["clean_top5_err"]
        row["top5_degradation_rel"] = (row["top5_degradation_abs"] / row["clean_top5_err"]
                                       if row["clean_top5_err"] > 0 else math.nan)
        for cat in categories:
            sel = corr[corr["category"] == cat]
            row[f"top1_err_{cat}"] = float(sel["top1_err"].mean()) if len(sel) else math.nan
        errors = metrics.error_table(g)
        mce = metrics.alexnet_mce(errors)
        rel = metrics.alexnet_mce(errors, row["clean_top1_err"], relative=True)
        row["mCE"] = mce.value
        row["relative_mCE"] = rel.value
        row["mCE_coverage"] = mce.coverage if mce.complete else f"not computed: {mce.coverage}"
        if mce.complete and not rel.complete:
            row["mCE_coverage"] += f"; relative mCE not computed: {rel.coverage}"
        row["mCE_comparable"] = bool(mce.complete and g["n"].min() >= FULL_VAL_SIZE)
        row["unnormalised_mCE"] = metrics.unnormalised_mce(errors)
        row["n_corruptions"] = len(errors)
        if baseline is not None:
            base = df[(df["model"] == baseline) & (df["dataset"] == dataset)]
            base_clean = base.loc[base["corruption"] == CLEAN, "top1_err"]
            base_clean_err = float(base_clean.iloc[0]) if len(base_clean) else None
            b_err = metrics.error_table(base)
            bm = metrics.baseline_mce(errors, b_err)
            br = metrics.baseline_mce(errors, b_err, row["clean_top1_err"], base_clean_err, relative=True)
            row["baseline"] = baseline
            row["baseline_mCE"] = bm.value
            row["baseline_relative_mCE"] = br.value
            row["baseline_coverage"] = bm.coverage
        out.append(row)
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


def corruption_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per (model, dataset, corruption): mean top-1/top-5 error over severities, severities used, AlexNet CE
    and relative CE (NaN unless all 5 severities), and CE vs ``baseline`` on the shared severities."""
    df = _dedupe_cells(df)
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


def paired_tests(df: pd.DataFrame, reference: str | None = None,
                 reader: RecordReader | None = None) -> pd.DataFrame:
    """McNemar test of each model against ``reference`` (default: first model by name) on every shared cell.

    Images are paired by ``image_id``; only images present in both cells count.
    """
    reader = reader or RecordReader()
    df = _dedupe_cells(df)
    reference = _resolve_reference(df, reference)
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


# ------------------------------------------------------------------------------------------ text tables


def _pct(x: float, digits: int = 1) -> str:
    return "" if x is None or not np.isfinite(x) else f"{100.0 * x:.{digits}f}"


def _latex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(rep.get(ch, ch) for ch in str(s))


# (column, header, lower-is-better) of the two summary tables
def _main_columns(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    cols = [("clean_top1_err", "Clean top-1", True), ("clean_top5_err", "Clean top-5", True),
            ("corr_top1_err", "Corr. top-1", True), ("corr_top5_err", "Corr. top-5", True),
            ("top5_degradation_abs", "Δ top-5", True), ("top5_degradation_rel", "Δ top-5 rel.", True),
            ("mCE", "mCE†", True), ("relative_mCE", "Rel. mCE†", True),
            ("unnormalised_mCE", "Unnorm. mCE", True)]
    if "baseline_mCE" in summary:
        cols.append(("baseline_mCE", f"mCE vs {summary['baseline'].iloc[0]}", True))
    return cols


def _category_columns(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    cats = [c[len("top1_err_"):] for c in summary.columns if c.startswith("top1_err_")]
    return ([(f"top1_err_{c}", c.capitalize(), True) for c in cats]
            + [("clean_ece", "ECE clean", True), ("corr_ece", "ECE corr.", True),
               ("clean_nll", "NLL clean", True), ("corr_nll", "NLL corr.", True)])


_CI_OF = {"clean_top1_err": "clean_top1", "clean_top5_err": "clean_top5",
          "corr_top1_err": "corr_top1", "corr_top5_err": "corr_top5"}
_NOT_PERCENT = {"clean_nll", "corr_nll"}


def _cell_text(row, col: str, ci: bool, latex: bool) -> str:
    v = row.get(col, math.nan)
    if v is None or not np.isfinite(v):
        return "--" if latex else "–"
    text = f"{v:.3f}" if col in _NOT_PERCENT else _pct(v)
    if col in ("top5_degradation_abs",) and v > 0:
        text = "+" + text
    if ci and col in _CI_OF:
        lo, hi = row.get(_CI_OF[col] + "_ci_low"), row.get(_CI_OF[col] + "_ci_high")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            text += (rf" {{\scriptsize[{_pct(lo)}, {_pct(hi)}]}}" if latex else f" [{_pct(lo)}, {_pct(hi)}]")
    return text


def _table_cells(summary: pd.DataFrame, columns, ci: bool, latex: bool) -> tuple[list[str], list[list[str]]]:
    multi = summary["dataset"].nunique() > 1
    header = (["Dataset"] if multi else []) + ["Model"] + [h for _, h, _ in columns]
    body = []
    best: dict[tuple[str, str], float] = {}
    for col, _, lower in columns:
        for ds, g in summary.groupby("dataset"):
            vals = g[col].to_numpy(dtype=float) if col in g else np.array([])
            vals = vals[np.isfinite(vals)]
            if len(g) >= 2 and vals.size >= 2:
                best[(ds, col)] = vals.min() if lower else vals.max()
    for _, row in summary.iterrows():
        cells = ([_latex_escape(row["dataset"]) if latex else str(row["dataset"])] if multi else [])
        cells.append(_latex_escape(row["model"]) if latex else str(row["model"]))
        for col, _, _ in columns:
            text = _cell_text(row, col, ci, latex)
            b = best.get((row["dataset"], col))
            if b is not None and np.isfinite(row.get(col, math.nan)) and row[col] == b:
                text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
            cells.append(text)
        body.append(cells)
    return header, body


def _footnote(summary: pd.DataFrame) -> str:
    n = ", ".join(f"{ds}: n = {int(g['n_images'].max())}" for ds, g in summary.groupby("dataset"))
    txt = (f"Errors in %, 95 % CIs in brackets (Wilson for clean, bootstrap over images for the corrupted "
           f"mean); {n}. † {ALEXNET_NOTE}")
    if "baseline_coverage" in summary:
        txt += " mCE vs baseline: sum of top-1 errors over the severities both models share, per corruption."
    return txt


def to_latex(summary: pd.DataFrame, label: str = "tab:robustness") -> str:
    """Two booktabs tables (headline numbers; per-category errors and calibration), one row per model."""
    parts = ["% Requires \\usepackage{booktabs}. Generated by robustbench_in.report."]
    for suffix, columns, caption in (
        ("", _main_columns(summary), "Robustness summary. " + _footnote(summary)),
        ("-categories", _category_columns(summary),
         "Mean corrupted top-1 error per category (%), expected calibration error (%, 15 bins) and "
         "negative log-likelihood."),
    ):
        header, body = _table_cells(summary, columns, ci=not suffix, latex=True)
        header = [_latex_escape(h).replace("Δ", r"$\Delta$").replace("†", r"$^\dagger$") for h in header]
        n_text = len(header) - len(columns)
        caption_tex = _latex_escape(caption).replace("†", r"$^\dagger$")
        lines = [r"\begin{table*}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
                 rf"\caption{{{caption_tex}}}",
                 rf"\label{{{label}{suffix}}}",
                 r"\begin{tabular}{" + "l" * n_text + "r" * len(columns) + "}", r"\toprule",
                 " & ".join(header) + r" \\", r"\midrule"]
        lines += [" & ".join(r) + r" \\" for r in body]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown would need the optional ``tabulate``)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = [":---" if a == "l" else "---:" for a in align]
    esc = [[str(c).replace("|", r"\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(r) + " |" for r in [esc[0], rule, *esc[1:]]]
    return "\n".join(lines) + "\n"


def to_markdown(summary: pd.DataFrame, corruptions: pd.DataFrame | None = None) -> str:
    """The two summary tables, and the per-corruption mean top-1 errors, as Markdown."""
    out = ["## Robustness summary", ""]
    header, body = _table_cells(summary, _main_columns(summary), ci=True, latex=False)
    out += [markdown_table(header, body, "l" * (len(header) - len(_main_columns(summary)))
                           + "r" * len(_main_columns(summary))), _footnote(summary), ""]
    cols = _category_columns(summary)
    header, body = _table_cells(summary, cols, ci=False, latex=False)
    out += ["## Per category and calibration", "",
            markdown_table(header, body, "l" * (len(header) - len(cols)) + "r" * len(cols)),
            "Mean corrupted top-1 error per category (%), ECE (%, 15 bins), NLL (nats).", ""]
    if corruptions is not None and len(corruptions):
        out += ["## Mean top-1 error per corruption (%)", ""]
        for ds, g in corruptions.groupby("dataset", sort=True):
            names = list(dict.fromkeys(g["corruption"]))
            piv = g.pivot(index="model", columns="corruption", values="top1_err")
            rows = [[m] + [_pct(piv.at[m, c]) or "–" for c in names] for m in piv.index]
            if corruptions["dataset"].nunique() > 1:
                out += [f"### {ds}", ""]
            out += [markdown_table(["Model", *names], rows), ""]
    return "\n".join(out)


# -------------------------------------------------------------------------------------------- run_report


def run_report(sweep_dirs: Sequence[Path | str], out_dir: Path | str, baseline: str | None = None,
               n_boot: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Read every results.csv under ``sweep_dirs`` and write tables and plots into ``out_dir``.

    Returns {name: path} of everything written: cells.csv / cells.parquet (tidy, one row per cell, with the
    McNemar p-value vs the reference model), summary.csv, corruption_errors.csv, paired_tests.csv,
    summary.tex, summary.md and the figures (PNG + PDF) under plots/.
    """
    from robustbench_in import plots

    out_dir = Path(out_dir)
    df = load_results([Path(p) for p in sweep_dirs])
    reference = _resolve_reference(df, baseline)
    reader = RecordReader()
    summary = summarize(df, baseline=baseline, n_boot=n_boot, seed=seed, reader=reader)
    per_corruption = corruption_table(df, baseline=baseline)
    paired = paired_tests(df, reference=reference, reader=reader)

    cells = df.merge(paired[["dataset", "corruption", "severity", "model", "reference", "p_value"]]
                     .rename(columns={"reference": "paired_reference", "p_value": "mcnemar_p"}),
                     on=["dataset", "corruption", "severity", "model"], how="left")
    cells = cells.sort_values(["dataset", "model", "corruption", "severity"], kind="stable").reset_index(drop=True)

    written: dict[str, Path] = {}
    written["cells_csv"] = atomic_write(out_dir / "cells.csv", lambda p: cells.to_csv(p, index=False))
    written["cells_parquet"] = atomic_write(out_dir / "cells.parquet", lambda p: cells.to_parquet(p, index=False))
    written["summary_csv"] = atomic_write(out_dir / "summary.csv", lambda p: summary.to_csv(p, index=False))
    written["corruption_errors_csv"] = atomic_write(
        out_dir / "corruption_errors.csv", lambda p: per_corruption.to_csv(p, index=False))
    written["paired_tests_csv"] = atomic_write(out_dir / "paired_tests.csv",
                                                lambda p: paired.to_csv(p, index=False))
    tex, md = to_latex(summary), to_markdown(summary, per_corruption)
    written["summary_tex"] = atomic_write(out_dir / "summary.tex", lambda p: p.write_text(tex, encoding="utf-8"))
    written["summary_md"] = atomic_write(out_dir / "summary.md", lambda p: p.write_text(md, encoding="utf-8"))
    written.update(plots.make_all(df, summary, out_dir / "plots"))
    return written
