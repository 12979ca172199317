"""Shared fixtures: where the shared ImageNet sample images are, and small decoded batches of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # examples/ and benchmarks/ import in any test run (pytest or python -m pytest)
    sys.path.insert(0, str(REPO_ROOT))


def _untracked_files() -> set[str] | None:
    """Untracked files and folders of the checkout, ignored ones included (outputs/, multirun/), caches left out;
    None outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "--others", "--directory", "--no-empty-directory"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    caches = ("__pycache__", ".pytest_cache", ".egg-info")
    return {p for p in proc.stdout.splitlines() if not any(c in p for c in caches)}


@pytest.fixture(scope="session", autouse=True)
def repo_stays_clean(tmp_path_factory):
    """No test may write into the working tree (Hydra run folders, reports, checkpoints...): they all go to
    temporary folders — the session (module fixtures included) runs in one. Checked once, over the whole session."""
    before = _untracked_files()
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(cwd)
    after = _untracked_files()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, f"tests wrote into the repository: {new[:10]}"


@pytest.fixture(autouse=True)
def run_in_tmp_path(tmp_path, monkeypatch):
    """Every test (and every process it starts) runs in its own temporary folder, so relative outputs such as
    Hydra's outputs/ and multirun/ never land in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def one_thread():
    """torch with one intra-op thread for one test module (``pytestmark = pytest.mark.usefixtures("one_thread")``);
    the global setting is restored afterwards, so no test changes it for the rest of the session."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def find_sample_root() -> Path | None:
    """RBIN_SAMPLES, else ../shared/data/imagenet-sample-500 beside the repository."""
    env = os.environ.get("RBIN_SAMPLES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "imagenet-sample-500")
    for c in candidates:
        if c.is_dir() and any(c.iterdir()):
            return c
    return None


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The shared sample set; a failure under CI (CI=true), a skip with a reason elsewhere."""
    root = find_sample_root()
    if root is None:
        msg = "shared ImageNet samples not found: set RBIN_SAMPLES or place them at ../shared/data/imagenet-sample-500"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def reference_crop(path: Path, size: int = 224, resize: int = 256) -> np.ndarray:
    """The ImageNet-C preparation (spec §1.1): PIL RGB, bilinear Resize(256) on the short side, CenterCrop(224)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


@pytest.fixture(scope="session")
def sample_uint8(sample_root) -> np.ndarray:
    """Four real sample images prepared like ImageNet-C: uint8 array (4, 224, 224, 3)."""
    files = sorted(sample_root.glob("*/*.JPEG"))[:: max(1, len(list(sample_root.glob('*/*.JPEG'))) // 4)][:4]
    return np.stack([reference_crop(f) for f in files])


@pytest.fixture(scope="session")
def sample_batch(sample_uint8) -> torch.Tensor:
    """The same four images as a float tensor (4, 3, 224, 224) in [0, 1]."""
    return torch.from_numpy(sample_uint8).permute(0, 3, 1, 2).float().div(255.0)


def compose_config(*overrides: str):
    """The composed config of ``main.py <overrides>``, through Hydra's compose API and the installed configs."""
    from hydra import compose, initialize_config_module

    from robustbench_in.cli import register_resolvers
    from robustbench_in.config import register_configs

    register_resolvers()
    register_configs()
    with initialize_config_module(config_module="robustbench_in.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# ------------------------------------------------------------------------------------------ shared helpers


def psnr(a, b, peak: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two images (numpy or torch, any shape); ``peak`` defaults to 255 for
    integer arrays and 1.0 for float tensors in [0, 1]."""
    if isinstance(a, torch.Tensor):
        a, b = a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy()
        peak = 1.0 if peak is None else peak
    a, b = np.asarray(a), np.asarray(b)
    peak = 255.0 if peak is None else peak
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak ** 2 / mse))


def seeds_for(name: str, severity: int, n: int = 4, run_seed: int = 0) -> torch.Tensor:
    """The engine's seeds for images 0..n-1 in the cell (name, severity)."""
    from corruptions.rng import derive_seeds

    return derive_seeds(run_seed, torch.arange(n), name, severity)


def hand_wilson(k, n, z=1.96):
    """The Wilson score interval written out by hand (the yardstick for metrics.wilson_ci)."""
    import math

    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def hand_ece(conf, correct, n_bins=15):
    """ECE by explicit binning: bins (i/n, (i+1)/n], the first also holding 0 (the yardstick for metrics.ece)."""
    total = 0.0
    for i in range(n_bins):
        lo, hi = i / n_bins, (i + 1) / n_bins
        sel = [(c, k) for c, k in zip(conf, correct) if (lo < c <= hi) or (i == 0 and c == 0)]
        if sel:
            acc = sum(k for _, k in sel) / len(sel)
            avg = sum(c for c, _ in sel) / len(sel)
            total += len(sel) / len(conf) * abs(acc - avg)
    return total


@pytest.fixture(scope="session", autouse=True)
def torch_threads_stay_as_they_were():
    """A test that changes torch's global thread count must put it back (checked at the end of the session)."""
    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "a test changed torch's global thread count and left it changed"
