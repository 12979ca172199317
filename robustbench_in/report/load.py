"""Reading what the engine wrote: every ``results.csv`` under some folders, and the per-image Parquet records.

Kept apart from the summaries so there is one place that knows the on-disk format (which columns are strings,
older files with extra or missing columns, duplicates across copied sweeps, records paths relative to their
results file), and so a report can be rebuilt anywhere from copied result folders without the engine.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from robustbench_in.report import metrics

RESULTS_FILE = "results.csv"

# Read verbatim as strings ("none", "NA" are legitimate settings), where a file has them. ``config_hash`` is
# only in results written before ``cell_id`` took over hashing a cell's settings: listed so those older files
# still read their hashes as text, never required.
STR_COLUMNS = (
    "model", "dataset", "corruption", "category", "preprocessing", "jpeg_mode", "config_hash", "cell_id",
    "records", "device", "versions", "backend", "git_commit", "weights",
)
RECORD_COLUMNS = ("image_id", "correct1", "correct5", "p_true", "confidence")


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


def _read_results_file(f: Path) -> pd.DataFrame:
    """One results.csv; strings stay verbatim, numbers read "" / "nan" as missing."""
    columns = pd.read_csv(f, nrows=0).columns
    return pd.read_csv(f, dtype={c: "string" for c in STR_COLUMNS if c in columns}, keep_default_na=False,
                       na_values={c: ["", "nan", "NaN", "NA"] for c in columns if c not in STR_COLUMNS})


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
        part = _read_results_file(f)
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
    """The cell numbers of every row with records, from those records through ``metrics.cell_metrics`` (the
    function the engine used to write them); rows without records keep their CSV numbers."""
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


def dedupe_cells(df: pd.DataFrame) -> pd.DataFrame:
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
