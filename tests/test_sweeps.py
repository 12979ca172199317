"""Sweeps and results that lose nothing: SIGKILL mid-sweep then resume, two writers, submitit_local, report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
STABLE = ["model", "dataset", "corruption", "severity", "n", "top1_err", "top5_err", "ece", "nll", "cell_id"]


def main_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), *args, "runtime.workers=0", "runtime.progress=false"]


def _sweep_args(sample_root: Path, results: Path, *extra: str) -> list[str]:
    return [
        "model=tiny_cnn", "data=imagenet_folder", f"data.root={sample_root}", "data.max_images=48",
        "suite.corruptions=[gaussian_noise,contrast]", "suite.severities=[1,5]", "runtime.shard_size=8",
        "runtime.batch_size=4", f"results_dir={results}", *extra,
    ]


def _rows(results: Path) -> pd.DataFrame:
    rows = pd.read_csv(results / "results.csv")
    return rows[STABLE].sort_values(["corruption", "severity"]).reset_index(drop=True)


def _records(results: Path) -> pd.DataFrame:
    rows = pd.read_csv(results / "results.csv")
    return pd.concat([pd.read_parquet(results / r).assign(cell=c) for r, c in zip(rows["records"], rows["cell_id"])]
                     ).sort_values(["cell", "image_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(sample_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = subprocess.run(main_cmd(*_sweep_args(sample_root, out)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_mid_sweep_then_rerun_gives_the_same_rows(sample_root, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(main_cmd(*_sweep_args(sample_root, out)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "partial").rglob("*.parquet"))) >= 5:  # some shards of some cells are done
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.csv").exists() or len(pd.read_csv(out / "results.csv")) < 5
    rerun = subprocess.run(main_cmd(*_sweep_args(sample_root, out)), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    pd.testing.assert_frame_equal(_rows(out), _rows(uninterrupted))
    pd.testing.assert_frame_equal(_records(out), _records(uninterrupted))
    assert not any((out / "partial").rglob("*.parquet"))  # partial shards cleaned up


def test_two_writers_into_one_results_folder(sample_root, uninterrupted, tmp_path):
    out = tmp_path / "shared"
    procs = [subprocess.Popen(main_cmd(*_sweep_args(sample_root, out, f"runtime.seed={seed}")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 * 5 and rows["cell_id"].is_unique
    assert sorted(rows["seed"].unique()) == [0, 1]
    seed0 = rows[rows["seed"] == 0][STABLE].sort_values(["corruption", "severity"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(seed0, _rows(uninterrupted))
    for rel in rows["records"]:
        assert len(pd.read_parquet(out / rel)) == 48


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = subprocess.run(main_cmd("-m", "hydra/launcher=submitit_local", "model=tiny_cnn", "runtime.seed=1,2",
                                   f"hydra.sweep.dir={tmp_path}"), capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = sorted(tmp_path.rglob("results.csv"))
    assert len(found) == 2
    assert sorted(pd.read_csv(f)["seed"].iloc[0] for f in found) == [1, 2]


def test_sweep_with_a_missing_model_still_runs_the_other_jobs(tmp_path):
    proc = subprocess.run(main_cmd("-m", "model=tiny_cnn,resnet50", f"hydra.sweep.dir={tmp_path}"),
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 1
    assert "weights resnet50/IMAGENET1K_V2 not found" in proc.stderr
    assert len(list(tmp_path.rglob("results.csv"))) == 1


def test_two_model_sweep_gives_the_full_report(sample_root, tmp_path):
    """2 tiny models x (clean + 3 corruptions x 2 severities) on 16 images, then task=report."""
    sweep = tmp_path / "sweep"
    proc = subprocess.run(main_cmd(
        "-m", "model=tiny_cnn", "model.label=tiny_a,tiny_b", "data=imagenet_folder", f"data.root={sample_root}",
        "data.max_images=16", "suite.corruptions=[gaussian_noise,contrast,fog]", "suite.severities=[1,5]",
        f"hydra.sweep.dir={sweep}"), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = pd.concat([pd.read_csv(f).assign(run=f.parent) for f in sweep.rglob("results.csv")])
    assert len(rows) == 2 * (1 + 3 * 2)
    report = tmp_path / "report"
    proc = subprocess.run(main_cmd("task=report", f"sweep_dir=[{sweep}]", f"report.out_dir={report}"),
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(report / "summary.csv").set_index("model")
    assert sorted(summary.index) == ["tiny_a", "tiny_b"]
    for model, cells in rows.groupby("model"):
        by_cell = {(c, s): pd.read_parquet(run / rec) for c, s, run, rec in
                   zip(cells["corruption"], cells["severity"], cells["run"], cells["records"])}
        clean = by_cell[("clean", 0)]
        corrupted = [r for (c, _), r in by_cell.items() if c != "clean"]
        assert summary.loc[model, "clean_top1_err"] == pytest.approx(1 - clean["correct1"].mean())
        assert summary.loc[model, "clean_top5_err"] == pytest.approx(1 - clean["correct5"].mean())
        assert summary.loc[model, "clean_nll"] == pytest.approx(-np.log(clean["p_true"].astype(float)).mean(), rel=1e-5)
        assert summary.loc[model, "corr_top1_err"] == pytest.approx(np.mean([1 - r["correct1"].mean() for r in corrupted]))
        assert summary.loc[model, "corr_nll"] == pytest.approx(
            np.mean([-np.log(r["p_true"].astype(float)).mean() for r in corrupted]), rel=1e-5)
    tex = (report / "summary.tex").read_text()
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    for table in tex.split("\\begin{tabular}")[1:]:  # one row per model in every table
        body = table.split("\\midrule")[1].split("\\bottomrule")[0]
        assert sorted(line.split("&")[0].strip() for line in body.strip().splitlines()) == ["tiny\\_a", "tiny\\_b"]
    pngs, pdfs = list((report / "plots").rglob("*.png")), list((report / "plots").rglob("*.pdf"))
    assert len(pngs) >= 4 and len(pdfs) >= 4
    assert all(p.stat().st_size > 5000 for p in pngs + pdfs)
