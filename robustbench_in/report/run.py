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
from robustbench_in.report.load import RecordReader, Skipped, read_results
from robustbench_in.report.summary import corruption_table, paired_tests, resolve_reference, summarize
from robustbench_in.report.tables import markdown_table, to_latex, to_markdown

SKIPPED_FILE = "skipped_results.csv"


def run_report(sweep_dirs: Sequence[Path | str], out_dir: Path | str, baseline: str | None = None,
               n_boot: int = 1000, seed: int = 0) -> dict[str, Path]:
    """Read every results.csv under ``sweep_dirs`` and write tables and plots into ``out_dir``.

    Returns {name: path} of everything written: cells.csv / cells.parquet (tidy, one row per cell, with the
    McNemar p-value vs the reference model), summary.csv, corruption_errors.csv, paired_tests.csv,
    summary.tex, summary.md and the figures (PNG + PDF) under plots/. Results files, rows or records that could
    not be used are warned about, left out, and listed in skipped_results.csv and summary.md.
    """
    out_dir = Path(out_dir)
    df, skipped = read_results([Path(p) for p in sweep_dirs])
    reference = resolve_reference(df, baseline)
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
    skipped += reader.skipped
    tex, md = to_latex(summary), to_markdown(summary, per_corruption) + _skipped_markdown(skipped)
    written["summary_tex"] = atomic_write(out_dir / "summary.tex", lambda p: p.write_text(tex, encoding="utf-8"))
    written["summary_md"] = atomic_write(out_dir / "summary.md", lambda p: p.write_text(md, encoding="utf-8"))
    written.update(plots.make_all(df, summary, out_dir / "plots"))
    written.update(_write_skipped(out_dir / SKIPPED_FILE, skipped))
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
