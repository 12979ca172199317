"""The whole command line against hostile input, the README's parallel launcher, and what reaches stderr."""

from __future__ import annotations

import errno
import subprocess
import sys
import warnings

import pandas as pd
import pytest

from robustbench_in import cli

from .hostile_cli import REPO, run_all


def test_every_hostile_run_ends_in_rc_0_or_one_error_line(tmp_path):
    """tests/faults/hostile_cli.py: bad images, label files, checkpoints, results files and config values, each
    run through main.py as its own command."""
    results = run_all(tmp_path, jobs=2)
    failed = [f"{name}: {problem}" for name, _, problem in results if problem]
    assert not failed, "\n".join(failed)
    assert len(results) >= 40


def test_the_readme_joblib_command_runs_with_dataloader_workers(sample_root, tmp_path):
    """README: ``python main.py -m hydra/launcher=joblib hydra.launcher.n_jobs=2 model=a,b ...`` with the default
    runtime (2 DataLoader workers inside each loky job)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    readme = (REPO / "README.md").read_text()
    assert "python main.py -m hydra/launcher=joblib hydra.launcher.n_jobs=2 model=" in readme
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "-m", "hydra/launcher=joblib",
                           "hydra.launcher.n_jobs=2", "model=efficientnet_lite0,tiny_cnn", f"data.root={sample_root}",
                           "data.max_images=8", "runtime.progress=false", f"hydra.sweep.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    found = sorted(tmp_path.rglob("results.csv"))
    assert len(found) == 2 and all(pd.read_csv(f)["n"].iloc[0] == 8 for f in found)


def test_a_full_disk_is_one_line_that_names_the_file_and_says_the_run_resumes():
    err = OSError(errno.ENOSPC, "No space left on device")
    err.filename = "/results/partial/abc/000001.parquet"
    assert cli.is_user_error(err)
    line = cli.one_line_error(err)
    assert line.startswith("/results/partial/abc/000001.parquet: No space left on device") and "again" in line
    assert not cli.is_user_error(OSError(errno.EBADF, "Bad file descriptor"))  # a bug stays a traceback


def test_a_missing_launcher_plugin_names_the_package_to_install():
    from hydra.errors import MissingConfigException

    err = MissingConfigException("missing", missing_cfg_file="hydra/launcher/joblib", options=["basic"])
    line = cli.one_line_error(err)
    assert "unknown hydra/launcher 'joblib'" in line and "pip install hydra-joblib-launcher" in line
    assert "robustbench_in[launchers]" in line


def test_warnings_reach_stderr_as_one_line(capsys):
    previous = warnings.showwarning
    try:
        warnings.showwarning = cli.one_line_warning
        warnings.warn("skipped results.csv: binary data\nsecond line", UserWarning, stacklevel=1)
    finally:
        warnings.showwarning = previous
    assert capsys.readouterr().err == "warning: skipped results.csv: binary data\n"
