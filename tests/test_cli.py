"""The Hydra command line: the demo runs, and bad input gets exactly one line on stderr (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_main(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
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


@pytest.mark.parametrize("args, expected", [
    (["data=imagenet_folder"], "data.root is not set"),
    (["data=imagenet_folder", "data.root=/does/not/exist"], "data.root=/does/not/exist does not exist"),
    (["model=resnet5000"], "unknown model 'resnet5000'"),
    (["model=torchvision", "model.name=resnet5000"], "unknown torchvision model 'resnet5000'"),
    (["runtime.batchsize=3"], "did you mean runtime.batch_size"),
    (["runtime.precision=bf61"], "runtime.precision: Invalid value 'bf61'"),
    (["suite.severities=[0]"], "severity must be an integer 1-5"),
])
def test_bad_input_gives_one_line(tmp_path, args, expected):
    proc = run_main(*args, f"results_dir={tmp_path}")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_data_root_alone_means_an_imagenet_folder(tmp_path):
    """``data.root=DIR`` with no ``data=`` choice evaluates DIR, not the embedded photos (the README's advice)."""
    from PIL import Image

    folder = tmp_path / "val" / "n01440764"  # tench, class 0
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 48), (120, 90, 60)).save(folder / "a.JPEG")
    out = tmp_path / "out"
    proc = run_main(f"data.root={tmp_path / 'val'}", "model=tiny_cnn", f"results_dir={out}", "runtime.workers=0")
    assert proc.returncode == 0, proc.stderr
    assert "using data=imagenet_folder" in proc.stdout
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["dataset"] == "imagenet_folder" and row["n"] == 1


def test_infer_data_group_respects_an_explicit_choice():
    from robustbench_in.app import infer_data_group

    assert infer_data_group(["data.root=/x"]) == ["data.root=/x", "data=imagenet_folder"]
    assert infer_data_group(["data.root=/x", "data.labels_file=/l"])[-1] == "data=imagenet_flat"
    assert infer_data_group(["data=imagenet_flat", "data.root=/x"]) == ["data=imagenet_flat", "data.root=/x"]
    assert infer_data_group(["model=tiny_cnn"]) == ["model=tiny_cnn"]
