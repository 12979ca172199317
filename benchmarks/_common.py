"""Shared helpers for the benchmarks: sample crops, the reference package, the bundled model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as main.py does: huge pages for the CPU allocator
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robustbench_in.allocator import keep_freed_memory  # noqa: E402
from robustbench_in.data import STANDARD, DataSpec, Preprocessing, build_dataset, make_loader  # noqa: E402

keep_freed_memory()  # as main.py does: glibc reuses freed batches (robustbench_in/allocator.py); both sides of
# every comparison run in this process or its forks, so both get it


def sample_root() -> Path:
    root = Path(os.environ.get("RBIN_SAMPLES", REPO.parent / "shared" / "data" / "imagenet-sample-500"))
    if not root.is_dir():
        sys.exit(f"sample images not found at {root}: set RBIN_SAMPLES=/path/to/imagenet-sample-500")
    return root


def sample_crops(n: int, preprocessing: Preprocessing | None = None, stride: int | None = None):
    """(uint8 crops (N, 3, S, S), labels (N,), image ids (N,)) of n images spread over the sample set."""
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root())))
    step = stride or max(1, len(images.items) // n)
    images.items = images.items[::step][:n]
    batches = [b for b in make_loader(images, preprocessing or STANDARD, 64, 0) if "images" in b]
    return (torch.cat([b["images"] for b in batches]), torch.cat([b["labels"] for b in batches]),
            torch.cat([b["image_ids"] for b in batches]))


def reference(name: str, image_hwc: np.ndarray, severity: int, seed: int, original: bool = True) -> np.ndarray:
    """The yardstick, seeded, truncated to uint8 like the ImageNet-C generator: imagecorruptions-imaug, except
    (``original=True``) frost and elastic_transform, where it departs from the original generator (``mk224.py``)."""
    from imagecorruptions import corrupt

    import mk224

    np.random.seed(seed)
    if original and name in mk224.CORRUPTIONS and image_hwc.shape[:2] == (224, 224):
        return np.uint8(mk224.CORRUPTIONS[name](image_hwc, severity))
    return np.uint8(corrupt(image_hwc, corruption_name=name, severity=severity))


def truncate_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8 by truncation, as np.uint8 did in the reference generator."""
    return (images.clamp(0, 1) * 255.0).to(torch.uint8)


def reference_any(name: str, image_hwc: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """The speed yardstick for any benchmark corruption, uint8 HWC: imagecorruptions-imaug for ImageNet-C and its
    extras (``reference(original=False)``), the numpy re-run of the original generator (``cbar_reference``, numpy's
    generator seeded per image, as ``fidelity_cbar.py`` does) for ImageNet-C-bar."""
    import cbar_reference

    if name in cbar_reference.LEVELS:
        np.random.seed(seed)
        return cbar_reference.corrupt(name, image_hwc, severity)
    return reference(name, image_hwc, severity, seed, original=False)
