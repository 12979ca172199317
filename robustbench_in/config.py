"""The schema: one dataclass per config group, each defined by the layer that uses it, composed here.

Hydra checks every composed config against these dataclasses (a typo'd key or a wrong type fails at composition);
``OmegaConf.to_object`` then turns a group into the very object the library receives, whose ``__post_init__``
checks the values. The zoo's entries are registered as ``model`` options here, so ``model=<entry>`` needs no YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from robustbench_in.data.datasets import DataSpec
from robustbench_in.evaluate.runtime import Runtime
from robustbench_in.evaluate.suite import SuiteSpec
from robustbench_in.models.registry import ModelSpec, zoo_entries
from robustbench_in.train.spec import TrainSpec


@dataclass
class GallerySpec:
    """``task=gallery``: which dataset image to draw, and the PNG's name inside the run folder."""

    image: int = 0
    out: str = "gallery.png"


@dataclass
class ReportSpec:
    """``task=report``: the model that normalises "mCE vs baseline", where to write (default <sweep>/report), and
    the data set whose clean cell is clean ImageNet for effective robustness (auto: imagenet_folder or _flat)."""

    baseline: Optional[str] = None
    out_dir: Optional[str] = None
    reference_dataset: str = "auto"


@dataclass
class ExportSpec:
    """``task=export``: where the ImageNet-C-style tree goes, or (``verify``) which one to re-hash."""

    out_dir: Optional[str] = None
    verify: bool = False  # only re-hash out_dir's files against its manifest (no data or model needed)
    overwrite: bool = False  # replace another export in out_dir (its files are deleted first)
    threads: Optional[int] = None  # JPEG encoding + writing threads (null = the CPU count, at least 4)

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ValueError(f"export.threads={self.threads} must be >= 1 (or null for the CPU count)")


@dataclass
class Config:
    task: str = "eval"  # a registered task: eval | gallery | report | train | export
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    suite: SuiteSpec = field(default_factory=SuiteSpec)
    runtime: Runtime = field(default_factory=Runtime)
    results_dir: Optional[str] = None  # null = the Hydra run dir
    sweep_dir: Any = None  # task=report: a folder, or a list of folders, holding results.csv files
    gallery: GallerySpec = field(default_factory=GallerySpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    export: ExportSpec = field(default_factory=ExportSpec)


def register_configs() -> None:
    """The schema (``base_config``) and one ``model`` option per zoo entry."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for name in zoo_entries():
        store.store(group="model", name=name, node=ModelSpec(name=name))
