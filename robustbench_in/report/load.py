"""Reading what the engine wrote: every ``results.csv`` under some folders, and the per-image Parquet records.

Kept apart from the summaries so there is one place that knows the on-disk format (which columns are strings,
older files with extra or missing columns, duplicates across copied sweeps, records paths relative to their
results file), and so a report can be rebuilt anywhere from copied result folders without the engine.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from robustbench_in.report import metrics

RESULTS_FILE = "results.csv"

# Read verbatim as strings ("none", "NA" are legitimate settings), where a file has them. ``config_hash`` is
# only in results written before ``cell_id`` took over hashing a cell's settings: listed so those older files
# still read their hashes as text, never required.
STR_COLUMNS = (
    "model", "dataset", "corruption", "category", "preprocessing", "jpeg_mode", "config_hash", "cell_id",
    "records", "device", "versions", "backend", "git_commit", "weights", "source", "protocol", "quantize",
)
RECORD_COLUMNS = ("image_id", "correct1", "correct5", "p_true", "confidence")
# What every row needs to be placed in a table; a file without these columns is not a results file.
REQUIRED_TEXT = ("model", "dataset", "corruption", "cell_id")
REQUIRED_NUMBERS = ("n", "top1_err", "top5_err")
REQUIRED_COLUMNS = (*REQUIRED_TEXT, "category", "severity", *REQUIRED_NUMBERS)
HEADER_ONLY = "no result rows (header only)"


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


@dataclass(frozen=True)
class Skipped:
    """A results file, or one row of it, left out of a report and why: warned about and listed in the report,
    so a broken copy costs its own rows and the reader still knows they are missing."""

    file: Path
    reason: str
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", " ".join(str(self.reason).split()))  # one line, whatever the input

    def __str__(self) -> str:
        return f"{self.file}{'' if self.line is None else f' line {self.line}'}: {self.reason}"


def _decode(f: Path) -> tuple[str | None, str]:
    """The file's text, or None and why not (unreadable, empty, binary): checked before pandas sees it, whose
    errors name neither the file nor the line."""
    try:
        raw = f.read_bytes()
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    if not raw.strip():
        return None, "empty file (0 rows, no header)"
    if b"\0" in raw:
        return None, "binary data (NUL bytes), not a UTF-8 CSV text file"
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (bad byte at offset {e.start}): not a CSV written by the engine"


def _split_records(f: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]], list[Skipped]]:
    """(header, [(line, fields)] of complete records, records with a wrong field count): a copy killed mid-row
    leaves a short last row that pandas would silently pad with NaN."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    bad: list[Skipped] = []
    line, last_kept = 1, False
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields:
                continue
            last_kept = not header or len(fields) == len(header)
            if not header:
                header = [h.strip() for h in fields]
            elif last_kept:
                rows.append((start, fields))
            else:
                cut = " (cut short)" if len(fields) < len(header) else ""
                bad.append(Skipped(f, f"{len(fields)} fields, header has {len(header)}{cut}", start))
    except csv.Error as e:
        bad.append(Skipped(f, f"not valid CSV from here on ({e})", line))
    if rows and last_kept and not text.endswith(("\n", "\r")):
        warnings.warn(f"{f}: does not end in a newline, so its last row (line {rows[-1][0]}) may be cut; kept",
                      stacklevel=4)
    return header, rows, bad


def _bad_values(part: pd.DataFrame) -> list[str]:
    """Per row, what is wrong with its required values ("" if nothing): a row without a cell id, errors or
    an integer severity cannot be placed in any table."""
    problems: list[list[str]] = [[] for _ in range(len(part))]
    for c in REQUIRED_TEXT:
        for i in np.flatnonzero(part[c].fillna("").astype(str).str.strip().eq("").to_numpy()):
            problems[i].append(f"no {c}")
    for c in ("severity", *REQUIRED_NUMBERS):
        values = pd.to_numeric(part[c], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values) & ((values == np.round(values)) if c == "severity" else True)
        for i in np.flatnonzero(~ok):
            v = part[c].iloc[i]
            what = "an integer" if c == "severity" else "a number"
            problems[i].append(f"no {c}" if pd.isna(v) or str(v).strip() == "" else f"{c}={v!r} is not {what}")
    return ["; ".join(p) for p in problems]


def _read_results_file(f: Path) -> tuple[pd.DataFrame | None, list[Skipped]]:
    """One results.csv, checked: (its good rows or None, what was left out). Strings stay verbatim, numbers
    read "" / "nan" as missing."""
    text, why = _decode(f)
    if text is None:
        return None, [Skipped(f, why)]
    header, rows, skipped = _split_records(f, text)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        shown = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
        return None, [Skipped(f, f"not a results file: no column(s) {', '.join(missing)} "
                                           f"(header: {shown[:200]})")]
    if not rows:  # every row cut short (they say why), or truly none
        return None, skipped or [Skipped(f, HEADER_ONLY)]
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + [r for _, r in rows])
    buf.seek(0)
    try:
        part = pd.read_csv(buf, dtype={c: "string" for c in STR_COLUMNS if c in header}, keep_default_na=False,
                           na_values={c: ["", "nan", "NaN", "NA"] for c in header if c not in STR_COLUMNS})
    except ValueError as e:  # pandas' ParserError included
        return None, skipped + [Skipped(f, f"unreadable as CSV ({str(e).splitlines()[0] if str(e) else e})")]
    problems = _bad_values(part)
    skipped += [Skipped(f, p, line) for (line, _), p in zip(rows, problems) if p]
    part = part[[not p for p in problems]].reset_index(drop=True)
    for c in REQUIRED_NUMBERS:
        part[c] = pd.to_numeric(part[c])
    return part, sorted(skipped, key=lambda s: s.line or 0)


def _warn_skipped(f: Path, skipped: list[Skipped]) -> None:
    """One warning per file naming it and, for rows, the first few lines and why."""
    if not skipped:
        return
    whole = [s.reason for s in skipped if s.line is None]
    if whole:
        warnings.warn(f"skipped {f}: {'; '.join(whole)}", stacklevel=4)
        return
    first = "; ".join(f"line {s.line}: {s.reason}" if s.line else s.reason for s in skipped[:3])
    more = f" (+{len(skipped) - 3} more)" if len(skipped) > 3 else ""
    warnings.warn(f"skipped {len(skipped)} row(s) of {f}: {first}{more}", stacklevel=4)


def read_results(paths: Sequence[Path | str], recompute: bool = False) -> tuple[pd.DataFrame, list[Skipped]]:
    """``load_results`` plus what it left out: every file or row that could not be used, each with a warning,
    so one broken results.csv never aborts a report. Every file bad -> one ValueError naming them."""
    files = find_results_files(paths)
    if not files:
        raise FileNotFoundError(f"no {RESULTS_FILE} found under: {', '.join(map(str, paths))}")
    frames, skipped, per_file = [], [], {}
    for f in files:
        part, per_file[f] = _read_results_file(f)
        skipped += per_file[f]
        if part is not None and len(part):
            part["results_dir"] = str(f.parent)
            frames.append(part)
    if not frames:  # one line for everything, no warnings repeating it
        shown = "; ".join(map(str, skipped[:5])) + (f" (+{len(skipped) - 5} more)" if len(skipped) > 5 else "")
        raise ValueError(f"no usable {RESULTS_FILE} under {', '.join(map(str, paths))}: {shown}")
    for f, problems in per_file.items():
        if [s.reason for s in problems] != [HEADER_ONLY]:  # a run that has not finished a cell yet: no warning
            _warn_skipped(f, problems)
    df = pd.concat(frames, ignore_index=True)
    for c in STR_COLUMNS:
        if c in df:
            df[c] = df[c].astype(object)
    df["severity"] = pd.to_numeric(df["severity"]).astype(int)
    n_before = len(df)
    df = df.drop_duplicates(subset="cell_id", keep="first").reset_index(drop=True)
    if len(df) < n_before:
        warnings.warn(f"dropped {n_before - len(df)} duplicate cell(s) found in more than one results file",
                      stacklevel=2)
    if recompute:
        reader = RecordReader()
        df = _recompute_from_records(df, reader)
        skipped += reader.skipped
    return _fill_missing_metrics(df), skipped


def load_results(paths: Sequence[Path | str], recompute: bool = False) -> pd.DataFrame:
    """All result rows under ``paths``, concatenated; a cell_id seen twice is kept once (first file wins).

    Adds ``results_dir`` (absolute, where the row's records live). With ``recompute`` the per-cell numbers
    (errors, Wilson CIs, ECE, NLL) are recomputed from the per-image records instead of trusted from the CSV.
    A broken file or row is skipped with a warning (``read_results`` also returns the list).
    """
    return read_results(paths, recompute)[0]


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
    """Per-image records of result rows, read once and cached (the summary and the paired tests share them).

    A missing or unreadable records file is warned about once, named, and kept in ``skipped`` for the report;
    its cell keeps the CSV numbers, so one broken Parquet file never aborts a report.
    """

    def __init__(self) -> None:
        self._cache: dict[str, pd.DataFrame | None] = {}
        self.skipped: list[Skipped] = []

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
            rec, why = _read_records(p)
            if rec is None:
                warnings.warn(f"records of cell {row['cell_id']} {why}: {p}", stacklevel=2)
                self.skipped.append(Skipped(p, f"records of cell {row['cell_id']}: {why}"))
            self._cache[key] = rec
        return self._cache[key]


def _read_records(p: Path) -> tuple[pd.DataFrame | None, str]:
    """One records file, or None and why not: pyarrow's errors do not name the file."""
    if not p.is_file():
        return None, "missing"
    try:
        names = pq.read_schema(p).names
        rec = pd.read_parquet(p, columns=[c for c in RECORD_COLUMNS if c in names])
    except (OSError, ValueError, pa.ArrowException) as e:
        return None, f"unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    missing = [c for c in ("image_id", "correct1", "correct5") if c not in rec]
    if missing:
        return None, f"lack column(s) {', '.join(missing)}"
    if rec["image_id"].duplicated().any():
        return None, "repeat image ids"
    return rec, ""


def _recompute_from_records(df: pd.DataFrame, reader: RecordReader) -> pd.DataFrame:
    """The cell numbers of every row with records, from those records through ``metrics.cell_metrics`` (the
    function the engine used to write them); rows without (readable) records keep their CSV numbers."""
    df = df.copy()
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
