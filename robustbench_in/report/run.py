"""``task=report``: read every results file under the sweep folders and write all tables and figures.

The one place that decides which files a report consists of and where they go; everything it writes is
computed by ``load``, ``summary``, ``tables`` and ``plots``. Each file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robustbench_in.files import atomic_write
from robustbench_in.report import plots
from robustbench_in.report.html import write_html
from robustbench_in.report.load import RecordReader, Skipped, read_results
from robustbench_in.report.summary import (
    ShiftReport,
    corruption_table,
    paired_tests,
    resolve_reference,
    resolve_reference_dataset,
    shift_report,
    summarize,
)
from robustbench_in.report.tables import markdown_table, shifts_latex, shifts_markdown, to_latex, to_markdown

SKIPPED_FILE = "skipped_results.csv"
SHIFT_FILES = {"shifts_csv": "shifts.csv", "shifts_tex": "shifts.tex", "shift_fits_csv": "shift_fits.csv"}


def run_report(sweep_dirs: Sequence[Path | str], out_dir: Path | str, baseline: str | None = None,
               n_boot: int = 1000, seed: int = 0, reference_dataset: str | None = "auto") -> dict[str, Path]:
    """Read every results.csv under ``sweep_dirs`` and write tables and plots into ``out_dir``.

    Returns {name: path} of everything written: cells.csv / cells.parquet (tidy, one row per cell, with the
    McNemar p-value vs the reference model), summary.csv, corruption_errors.csv, paired_tests.csv,
    summary.tex, summary.md, the distribution-shift table shifts.csv / shifts.tex / shift_fits.csv (when clean
    ImageNet, ``reference_dataset``, and a shift set are there) and the figures (PNG + PDF) under plots/.
    Results files, rows or records that could not be used are warned about, left out, and listed in
    skipped_results.csv and summary.md. report.html holds all of it in one self-contained file to share.
    """
    out_dir = Path(out_dir)
    df, skipped = read_results([Path(p) for p in sweep_dirs])
    reference = resolve_reference(df, baseline)
    resolve_reference_dataset(df, reference_dataset)  # a bad name fails before any work
    reader = RecordReader()
    summary = summarize(df, baseline=baseline, n_boot=n_boot, seed=seed, reader=reader,
                        reference_dataset=reference_dataset)
    shifts = shift_report(df, summary, reference_dataset, n_boot=n_boot, seed=seed, reader=reader)
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
    written.update(_write_shifts(out_dir, shifts))
    skipped += reader.skipped
    tex = to_latex(summary)
    md = to_markdown(summary, per_corruption) + shifts_markdown(shifts) + _skipped_markdown(skipped)
    written["summary_tex"] = atomic_write(out_dir / "summary.tex", lambda p: p.write_text(tex, encoding="utf-8"))
    written["summary_md"] = atomic_write(out_dir / "summary.md", lambda p: p.write_text(md, encoding="utf-8"))
    written.update(plots.make_all(df, summary, out_dir / "plots", shifts))
    written.update(_write_skipped(out_dir / SKIPPED_FILE, skipped))
    written["report_html"] = write_html(out_dir, df, summary, per_corruption, paired, shifts, skipped, dict(written))
    return written


def _skipped_frame(skipped: list[Skipped]) -> pd.DataFrame:
    return pd.DataFrame({"file": [str(s.file) for s in skipped],
                         "line": pd.array([s.line for s in skipped], dtype="Int64"),
                         "reason": [s.reason for s in skipped]})


def _skipped_markdown(skipped: list[Skipped]) -> str:
    """A section naming what the report leaves out, so its numbers are never read as covering everything."""
    if not skipped:
        return ""
    rows = [[s.file, "" if s.line is None else s.line, s.reason] for s in skipped]
    return "\n".join(["", "## Skipped results", "", markdown_table(["File", "Line", "Reason"], rows, "lrl")])


def _write_skipped(path: Path, skipped: list[Skipped]) -> dict[str, Path]:
    """skipped_results.csv when something was left out; a stale one from an earlier report is removed."""
    if not skipped:
        path.unlink(missing_ok=True)
        return {}
    return {"skipped_results_csv": atomic_write(path, lambda p: _skipped_frame(skipped).to_csv(p, index=False))}


def _write_shifts(out_dir: Path, shifts: ShiftReport) -> dict[str, Path]:
    """shifts.csv, shifts.tex and shift_fits.csv when there is a shifts table; stale ones from an earlier report
    are removed otherwise, so the folder never shows a table the current results do not support."""
    if shifts.table.empty:
        for name in SHIFT_FILES.values():
            (out_dir / name).unlink(missing_ok=True)
        return {}
    tex = shifts_latex(shifts)
    return {
        "shifts_csv": atomic_write(out_dir / SHIFT_FILES["shifts_csv"],
                                   lambda p: shifts.table.to_csv(p, index=False)),
        "shifts_tex": atomic_write(out_dir / SHIFT_FILES["shifts_tex"], lambda p: p.write_text(tex, encoding="utf-8")),
        "shift_fits_csv": atomic_write(out_dir / SHIFT_FILES["shift_fits_csv"],
                                       lambda p: shifts.fits.to_csv(p, index=False)),
    }
