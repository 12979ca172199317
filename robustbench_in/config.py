"""Structured configs: the schema every Hydra config is checked against, and one-line error messages.

A typo'd key (``runtime.batchsize``) or a bad value (``runtime.precision=bf61``) is rejected by
OmegaConf against these dataclasses; :func:`one_line_error` turns its multi-line report into one line
that names the key and what to do.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class PreprocessingConfig:
    """Overrides of the model's own preprocessing (null = keep the model's)."""

    input_size: Optional[int] = None
    resize_size: Optional[int] = None
    interpolation: Optional[str] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None


@dataclass
class ModelConfig:
    source: str = MISSING
    name: str = ""
    weights: Optional[str] = None
    weights_file: Optional[str] = None
    random_init: bool = False
    num_classes: int = 1000
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)


@dataclass
class DataConfig:
    name: str = MISSING
    root: Optional[str] = None
    labels_file: Optional[str] = None
    max_images: Optional[int] = None


@dataclass
class SuiteConfig:
    """Which corruptions and severities. Entries of ``corruptions`` are registry names, or dicts with a
    ``_target_`` (any importable callable ``fn(images, severity, seeds)``) plus optional name/category/params."""

    name: str = "clean"
    include_clean: bool = True
    corruptions: List[Any] = field(default_factory=list)
    severities: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    faithful_jpeg: bool = False
    jpeg_quality: int = 85


@dataclass
class RuntimeConfig:
    device: str = "auto"
    batch_size: int = 64
    workers: int = 2
    precision: Precision = Precision.auto
    channels_last: Optional[bool] = None  # null = on for CUDA
    shard_size: int = 2048
    seed: int = 0
    progress: bool = True


@dataclass
class GalleryConfig:
    image: int = 0  # index into the dataset
    out: str = "gallery.png"


@dataclass
class ReportConfig:
    baseline: Optional[str] = None
    out_dir: Optional[str] = None


@dataclass
class Config:
    task: str = "eval"  # eval | gallery | report
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    results_dir: Optional[str] = None  # null = the Hydra run dir
    sweep_dir: List[str] = field(default_factory=list)  # for task=report
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


def one_line_error(err: BaseException) -> str:
    """Condense an OmegaConf/Hydra/our own error into one line naming the key and the fix."""
    if err.__cause__ is not None and str(err).startswith(("Could not override", "Error merging override")):
        err = err.__cause__
    text = str(err).strip()
    first = text.split("\n")[0].strip()
    full_key = ""
    for line in text.split("\n"):
        if line.strip().startswith("full_key:"):
            full_key = line.split(":", 1)[1].strip()
    if "not in" in first and "Key '" in first:
        key = first.split("'")[1]
        node = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        valid = _valid_keys(node)
        close = difflib.get_close_matches(key, valid, n=2)
        hint = f"did you mean {node + '.' if node else ''}{close[0]}?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown config key '{full_key or key}': {hint}"
    if "Missing mandatory value" in first:
        key = full_key or first.split(":")[-1].strip()
        return f"config key '{key}' must be set (e.g. {key}=...)"
    if full_key and full_key not in first:
        return f"{full_key}: {first}"
    return first


def _valid_keys(node: str) -> list[str]:
    from dataclasses import fields

    cls: Any = Config
    for part in [p for p in node.split(".") if p]:
        match = [f for f in fields(cls) if f.name == part]
        if not match:
            return []
        t = match[0].default_factory() if match[0].default_factory is not None else None  # type: ignore[misc]
        if t is None or not hasattr(t, "__dataclass_fields__"):
            return []
        cls = type(t)
    return [f.name for f in fields(cls)]
