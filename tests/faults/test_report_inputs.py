"""``task=report`` on broken inputs (issue 11, item 9): a bad results.csv or records file is named, skipped with
a warning and listed in the report; the good files still make the report; only when nothing is usable does it
fail, in one line naming the files."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_in.report.load import load_results, read_results
from robustbench_in.report.run import run_report
from test_report import N, sweep_cells, write_run

REPO = Path(__file__).resolve().parents[2]


def good_run(run_dir: Path, model: str = "tiny_a", seed: int = 0) -> Path:
    """A results dir exactly as the engine writes it; returns its results.csv."""
    write_run(run_dir, model, sweep_cells(0.7, 0.6), np.random.default_rng(seed))
    return run_dir / "results.csv"


def bad_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def header_of(results: Path) -> bytes:
    return results.read_bytes().split(b"\n")[0] + b"\n"


BROKEN = {
    "binary": (lambda good: bytes(range(256)) * 16, "binary data"),
    "empty": (lambda good: b"", "empty file"),
    "wrong_header": (lambda good: b"model,top1\nresnet,0.3\n", "no column\\(s\\) dataset.*cell_id"),
    "latin1": (lambda good: "model,caf\xe9\nx,y\n".encode("latin-1"), "not UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_lone_broken_file_fails_in_one_line_naming_it(tmp_path, kind):
    make, reason = BROKEN[kind]
    good = good_run(tmp_path / "template")
    bad = bad_file(tmp_path / "sweep" / "0" / "results.csv", make(good))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error says it all: no warning repeats it
        with pytest.raises(ValueError, match=re.escape(str(bad)) + ": .*" + reason) as err:
            load_results([tmp_path / "sweep"])
    assert "\n" not in str(err.value)


def test_header_only_file_is_a_note_not_a_crash(tmp_path):
    good = good_run(tmp_path / "sweep" / "0")
    empty = bad_file(tmp_path / "sweep" / "1" / "results.csv", header_of(good))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that has not finished a cell yet is not worth a warning
        written = run_report([tmp_path / "sweep"], tmp_path / "report", n_boot=20)
    skipped = pd.read_csv(written["skipped_results_csv"])
    assert skipped["file"].tolist() == [str(empty)] and "header only" in skipped["reason"][0]
    assert len(pd.read_csv(written["cells_csv"])) == 7
    with pytest.raises(ValueError, match=re.escape(str(empty)) + ": no result rows"):
        load_results([tmp_path / "sweep" / "1"])


def test_file_truncated_mid_row_drops_that_row_with_a_warning(tmp_path):
    csv = good_run(tmp_path / "sweep" / "0")
    text = csv.read_bytes()
    csv.write_bytes(text[: len(text) - 200])  # a killed copy: the last line cut in the middle
    with pytest.warns(UserWarning, match=re.escape(str(csv)) + ".*line 8: 15 fields, header has 25 \\(cut short\\)"):
        df, skipped = read_results([tmp_path / "sweep"])
    assert len(df) == 6 and "tiny_a-imagenet_sample-contrast-3" not in set(df["cell_id"])
    assert [(s.file, s.line) for s in skipped] == [(csv, 8)]


def test_rows_missing_required_values_are_skipped_by_line(tmp_path):
    csv = good_run(tmp_path / "sweep" / "0")
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows.loc[1, "cell_id"] = ""
    rows.loc[2, "top1_err"] = ""
    rows.loc[3, "severity"] = "three"
    rows.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match=re.escape(str(csv))):
        df, skipped = read_results([tmp_path / "sweep"])
    assert len(df) == 4 and df["severity"].dtype.kind == "i"
    assert [(s.line, s.reason) for s in skipped] == [
        (3, "no cell_id"), (4, "no top1_err"), (5, "severity='three' is not an integer")]


def test_cut_in_the_last_field_is_kept_with_a_warning(tmp_path):
    csv = good_run(tmp_path / "sweep" / "0")
    csv.write_bytes(csv.read_bytes()[:-5])  # no final newline, every field still there
    with pytest.warns(UserWarning, match=re.escape(str(csv)) + ": does not end in a newline.*line 8"):
        assert len(load_results([tmp_path / "sweep"])) == 7


def test_one_bad_file_in_a_sweep_leaves_the_report_to_the_good_one(tmp_path):
    root = tmp_path / "sweep"
    good_run(root / "0", "tiny_a")
    bad = bad_file(root / "1" / "results.csv", bytes(range(256)) * 16)
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        written = run_report([root], tmp_path / "report", n_boot=20)
    cells = pd.read_csv(written["cells_csv"])
    assert len(cells) == 7 and set(cells["model"]) == {"tiny_a"}
    skipped = pd.read_csv(written["skipped_results_csv"])
    assert skipped["file"].tolist() == [str(bad)] and skipped["reason"].str.contains("binary").all()
    assert str(bad) in written["summary_md"].read_text() and "## Skipped results" in written["summary_md"].read_text()
    # Fixed and rerun into the same folder: the stale list goes.
    good_run(root / "1", "tiny_b", seed=1)
    written = run_report([root], tmp_path / "report", n_boot=20)
    assert "skipped_results_csv" not in written and not (tmp_path / "report" / "skipped_results.csv").exists()


def test_unreadable_records_are_named_and_the_cell_keeps_its_csv_numbers(tmp_path):
    root = tmp_path / "sweep"
    good_run(root / "0")
    rec = root / "0" / "records" / "tiny_a-imagenet_sample-contrast-3.parquet"
    rec.write_bytes(b"not parquet" * 10)
    with pytest.warns(UserWarning, match="records of cell tiny_a-imagenet_sample-contrast-3 unreadable.*"
                                         + re.escape(str(rec))):
        df, skipped = read_results([root], recompute=True)
    assert len(df) == 7 and [s.file for s in skipped] == [rec]
    with pytest.warns(UserWarning, match=re.escape(str(rec))):
        written = run_report([root], tmp_path / "report", n_boot=20)
    assert pd.read_csv(written["skipped_results_csv"])["file"].tolist() == [str(rec)]
    assert pd.read_csv(written["cells_csv"])["n"].eq(N).all()


def test_cli_every_file_bad_is_one_line_rc2_and_one_bad_file_is_listed(tmp_path):
    root = tmp_path / "sweep"
    bad = bad_file(root / "1" / "results.csv", b"")
    cmd = [sys.executable, str(REPO / "main.py"), "task=report", f"sweep_dir={root}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and str(bad) in proc.stderr
    good_run(root / "0")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped_results_csv: {root / 'report' / 'skipped_results.csv'}" in proc.stdout
    assert str(bad) in proc.stderr
