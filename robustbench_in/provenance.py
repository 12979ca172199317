"""Where a number came from: software versions and the git commit, recorded in every result row and checkpoint."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def software_versions() -> str:
    parts = [f"python={platform.python_version()}"]
    for pkg in ("robustbench_in", "torch", "torchvision", "timm", "numpy", "pillow"):
        try:
            parts.append(f"{pkg}={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return " ".join(parts)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Short commit of the checkout the package runs from (``-dirty`` with uncommitted changes), else unknown."""
    where = str(PACKAGE_ROOT.parent)
    try:
        out = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
