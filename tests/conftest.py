"""Shared fixtures: where the shared ImageNet sample images are, and small decoded batches of them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]


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
