"""The ``suite`` config group: which corruptions at which severities, and the (corruption, severity) cells it makes.

An entry of ``suite.corruptions`` is a registered name, or a dict with a ``_target_`` (any importable callable
``fn(images, severity, seeds)``, or a factory returning one) plus optional name/category/random/runs_on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List

from omegaconf import OmegaConf

from corruptions.registry import Corruption, check_severity, get_corruption


@dataclass
class SuiteSpec:
    name: str = "clean"
    include_clean: bool = True
    corruptions: List[Any] = field(default_factory=list)
    severities: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    faithful_jpeg: bool = False  # the quality-85 JPEG round trip the released ImageNet-C files went through
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        try:
            self.severities = [check_severity(s) for s in self.severities]
        except ValueError as err:
            raise ValueError(f"suite.severities: {err}") from None
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"suite.jpeg_quality={self.jpeg_quality} must be 1-100")


@dataclass(frozen=True)
class Cell:
    """One (corruption, severity) of a suite; ``corruption is None`` is the clean cell (severity 0)."""

    name: str
    severity: int
    category: str
    corruption: Corruption | None = None
    faithful_jpeg: bool = False
    jpeg_quality: int = 85

    @property
    def jpeg_mode(self) -> str:
        return f"faithful_q{self.jpeg_quality}" if self.faithful_jpeg and self.corruption is not None else "none"


CLEAN_CELL = Cell("clean", 0, "clean")


def plugin_corruption(entry: dict) -> Corruption:
    """A suite entry with ``_target_``: any importable callable ``fn(images, severity, seeds)``, or a factory
    (called with the entry's other keys) returning one or a :class:`Corruption`. The entry's name, category,
    random and runs_on win over what a factory picked."""
    from hydra.errors import InstantiationException
    from hydra.utils import get_method, instantiate

    entry = dict(entry)
    target = entry.pop("_target_")
    meta = {k: entry.pop(k) for k in ("name", "category", "random", "runs_on") if k in entry}
    meta = {k: v for k, v in meta.items() if v is not None}  # name: null -> the default
    if "random" in meta:
        meta["random"] = bool(meta["random"])
    try:
        fn = instantiate({"_target_": target, **entry}) if entry else get_method(target)
    except InstantiationException as err:  # show the factory's own error (one line), not Hydra's wrapper
        raise (err.__cause__ or err) from None
    if isinstance(fn, Corruption):
        return dataclasses.replace(fn, **meta)
    meta = {"name": target.rsplit(".", 1)[-1], **meta}
    return Corruption(fn=fn, description=(getattr(fn, "__doc__", "") or "").strip().split("\n")[0], **meta)


def suite_corruptions(suite: SuiteSpec) -> list[Corruption]:
    out = []
    for entry in suite.corruptions:
        if isinstance(entry, str):
            out.append(get_corruption(entry))
        else:
            plain = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else dict(entry)
            out.append(plugin_corruption(plain))
    return out


def build_cells(suite: SuiteSpec) -> list[Cell]:
    """The suite's (corruption, severity) cells, clean first."""
    cells = [CLEAN_CELL] if suite.include_clean else []
    for c in suite_corruptions(suite):
        for s in suite.severities:
            cells.append(Cell(c.name, s, c.category, c, bool(suite.faithful_jpeg), int(suite.jpeg_quality)))
    if not cells:
        raise ValueError("the suite has no cells: set suite.corruptions or suite.include_clean=true")
    return cells
