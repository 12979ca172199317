"""The Hydra command line: the demo runs, and bad input gets exactly one line on stderr (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_demo_writes_results_csv(tmp_path):
    proc = run_main(f"results_dir={tmp_path}", "runtime.workers=0")
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "results.csv")
    assert list(rows["corruption"]) == ["clean"] and rows["n"].iloc[0] >= 5
    assert {"top1_err", "top5_err", "seconds", "images_per_s", "preprocessing"} <= set(rows.columns)
    assert "top1_err" in proc.stdout  # the printed table
    again = run_main(f"results_dir={tmp_path}", "runtime.workers=0")
    assert "resume: 1 of 1 cells already" in again.stdout
    assert len(pd.read_csv(tmp_path / "results.csv")) == 1


def test_demo_shows_the_degradation_and_writes_gallery_and_report(tmp_path):
    """``make demo`` (here with the quick tiny_cnn): the table per corruption, the honest note, the paths last."""
    proc = run_main("task=demo", "suite=demo", "model=tiny_cnn", "suite.corruptions=[fog,low_light_noise]",
                    f"results_dir={tmp_path}", "runtime.workers=0", "runtime.progress=false")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mean top-1" in out and "Δ top-1" in out and "fog" in out and "low_light_noise" in out
    assert "demonstration, not a measurement" in out
    last = out.strip().splitlines()[-3:]
    assert [line.split(":")[0] for line in last] == ["results", "gallery", "report"]
    for line in last:
        assert Path(line.split(":", 1)[1].strip()).is_file()
    rows = pd.read_csv(tmp_path / "results.csv")
    assert sorted(set(rows["severity"])) == [0, 1, 3, 5] and len(rows) == 1 + 2 * 3
    assert set(rows["quantize"]) == {"none", "truncate"}
    bad = run_main("task=demo", f"results_dir={tmp_path / 'b'}")  # suite=clean: nothing to show
    assert bad.returncode == 2 and "suite=demo" in bad.stderr


# Bad input on the command line (typos, bad values, bad files): tests/faults/hostile_cli.py, one place for all.


def test_data_root_alone_means_an_imagenet_folder(tmp_path):
    """``data.root=DIR`` with no ``data=`` choice evaluates DIR, not the embedded photos (the README's advice)."""
    from PIL import Image

    folder = tmp_path / "val" / "n01440764"  # tench, class 0
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 48), (120, 90, 60)).save(folder / "a.JPEG")
    out = tmp_path / "out"
    proc = run_main(f"data.root={tmp_path / 'val'}", "model=tiny_cnn", f"results_dir={out}", "runtime.workers=0")
    assert proc.returncode == 0, proc.stderr
    assert "reading it as imagenet_folder" in proc.stdout
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["dataset"] == "imagenet_folder" and row["n"] == 1


def test_a_bad_job_of_a_sweep_does_not_stop_the_others(tmp_path):
    proc = run_main("-m", "model=tiny_cnn", "data=embedded,imagenet_folder", "runtime.workers=0",
                    f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 1, proc.stderr
    assert "1 job(s) of the sweep failed" in proc.stderr and "data.root is not set" in proc.stderr
    assert (tmp_path / "data=embedded,model=tiny_cnn" / "results.csv").is_file()


def test_an_unknown_option_in_a_sweep_fails_before_any_job_runs(tmp_path):
    proc = run_main("-m", "model=tiny_cnn,resnet5000", "runtime.workers=0", f"hydra.sweep.dir={tmp_path}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "unknown model 'resnet5000'" in lines[0], proc.stderr
    assert not list(tmp_path.rglob("results.csv"))


def test_unwritable_results_dir_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_main(f"results_dir={blocker / 'sub'}", "model=tiny_cnn", "runtime.workers=0")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "is not writable" in lines[0], proc.stderr
    assert "model tiny_cnn" not in proc.stdout  # nothing was built or evaluated


def test_hydra_full_error_shows_the_traceback(tmp_path):
    import os

    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "runtime.batchsize=3", f"results_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_report_takes_a_single_sweep_path_and_writes_into_it(tmp_path):
    runs = tmp_path / "runs"
    for label in ("a", "b"):
        proc = run_main("model=tiny_cnn", f"model.label={label}", f"results_dir={runs / label}", "runtime.workers=0")
        assert proc.returncode == 0, proc.stderr
    report = run_main("task=report", f"sweep_dir={runs}")  # a bare path, not a list
    assert report.returncode == 0, report.stderr
    assert (runs / "report" / "summary.csv").is_file()
    assert f"report: {runs / 'report'}" in report.stdout
    assert sorted(pd.read_csv(runs / "report" / "summary.csv")["model"]) == ["a", "b"]
