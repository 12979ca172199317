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


QUANTIZE_MODES = ("truncate", "round", "none")


@dataclass
class SuiteSpec:
    name: str = "clean"
    include_clean: bool = True
    corruptions: List[Any] = field(default_factory=list)
    severities: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    faithful_jpeg: bool = False  # the quality-85 JPEG round trip the released ImageNet-C files went through
    jpeg_quality: int = 85
    #: the 8-bit step after a corruption: truncate (np.uint8(x * 255), as the ImageNet-C generator saves every
    #: image), round, or none (the model sees floats). The JPEG round trip always truncates first.
    quantize: str = "none"

    def __post_init__(self) -> None:
        try:
            self.severities = [check_severity(s) for s in self.severities]
        except ValueError as err:
            raise ValueError(f"suite.severities: {err}") from None
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"suite.jpeg_quality={self.jpeg_quality} must be 1-100")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"suite.quantize={self.quantize} is not a mode: use {', '.join(QUANTIZE_MODES)}")


@dataclass(frozen=True)
class Cell:
    """One (corruption, severity) of a suite; ``corruption is None`` is the clean cell (severity 0), or a cell
    read from corrupted files on disk (``source="files"``: the released ImageNet-C tree, an export)."""

    name: str
    severity: int
    category: str
    corruption: Corruption | None = None
    faithful_jpeg: bool = False
    jpeg_quality: int = 85
    source: str = "on_the_fly"  # where the cell's images come from: on_the_fly (generated here) | files
    quantize: str = "none"  # truncate | round | none: the 8-bit step after the corruption (SuiteSpec.quantize)

    @property
    def quantize_mode(self) -> str:
        """What the model's input went through: the JPEG round trip truncates; clean and file cells are 8-bit."""
        if self.corruption is None:
            return "none" if self.source == "on_the_fly" else "files"
        return "truncate" if self.faithful_jpeg else self.quantize

    @property
    def jpeg_mode(self) -> str:
        if self.source == "files":
            return "files"  # whatever coding the files carry (quality-85 JPEG for the released sets)
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


def suite_names(suite: SuiteSpec) -> list[str]:
    """The corruption names a suite lists, without resolving them (files on disk may carry names that are not
    registered here: ImageNet-C-bar, 3DCC)."""
    names = []
    for entry in suite.corruptions:
        if isinstance(entry, str):
            names.append(entry)
        else:
            names.append(entry.get("name") or str(entry["_target_"]).rsplit(".", 1)[-1])
    return names


def file_cells(suite: SuiteSpec, tree: dict[tuple[str, int], Any]) -> list[tuple[Cell, Any]]:
    """(cell, its images) for a tree of corrupted files: every folder for a suite that lists no corruptions,
    else the suite's (corruption, severity) cells, each of which must be in the tree."""
    from corruptions import list_corruptions

    names = suite_names(suite)
    keys = sorted(tree) if not names else [(n, s) for n in names for s in suite.severities]
    missing = [f"{n}/{s}" for n, s in keys if (n, s) not in tree]
    if missing:
        found = sorted({n for n, _ in tree})
        raise ValueError(f"suite {suite.name}: the tree has no folder {', '.join(missing[:4])}"
                         + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
                         + f"; it holds {', '.join(found)} at severities "
                         + ", ".join(map(str, sorted({s for _, s in tree}))) + " (suite=clean reads every folder)")
    registered = set(list_corruptions())
    return [(Cell(n, s, get_corruption(n).category if n in registered else "other", source="files"), tree[(n, s)])
            for n, s in keys]


def build_cells(suite: SuiteSpec) -> list[Cell]:
    """The suite's (corruption, severity) cells, clean first."""
    cells = [CLEAN_CELL] if suite.include_clean else []
    for c in suite_corruptions(suite):
        for s in suite.severities:
            cells.append(Cell(c.name, s, c.category, c, bool(suite.faithful_jpeg), int(suite.jpeg_quality),
                              quantize=suite.quantize))
    if not cells:
        raise ValueError("the suite has no cells: set suite.corruptions or suite.include_clean=true")
    return cells
