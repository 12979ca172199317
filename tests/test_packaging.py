"""The installed package runs on its own: the wheel carries conf/, and ``robustbench-in`` works from any folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_and_config_group():
    """setuptools gets an explicit package list (conf/ is mapped into robustbench_in.conf): it must stay complete."""
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    code = {".".join(p.parent.relative_to(REPO).parts) for p in REPO.glob("robustbench_in/**/__init__.py")}
    code |= {".".join(p.parent.relative_to(REPO).parts) for p in REPO.glob("corruptions/**/__init__.py")}
    groups = {f"robustbench_in.conf.{d.name}" for d in (REPO / "conf").iterdir() if list(d.glob("*.yaml"))}
    assert code | groups | {"robustbench_in.conf"} == listed
    assert setup["package-dir"] == {"robustbench_in.conf": "conf"}


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no deps, no network) into a fresh venv whose dependencies come from this
    environment, and run ``robustbench-in suite=clean`` from an empty folder."""
    dist, venv, work, src = tmp_path / "dist", tmp_path / "venv", tmp_path / "work", tmp_path / "src"
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "outputs", "multirun", "build",
                                                             "__pycache__", "*.egg-info", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = dist.glob("robustbench_in-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import robustbench_in.conf, corruptions; "
                            "print(robustbench_in.conf.__file__); print(corruptions.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where  # the wheel's copy, not the checkout's
    work.mkdir()
    proc = subprocess.run([str(venv / "bin" / "robustbench-in"), "suite=clean", "runtime.workers=0",
                           "runtime.progress=false"], capture_output=True, text=True, cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = work.rglob("results.csv")
    row = pd.read_csv(results).iloc[0]
    assert (row["model"], row["dataset"], row["corruption"]) == ("efficientnet_lite0", "embedded", "clean")
    assert row["n"] >= 5
