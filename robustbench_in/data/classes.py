"""The 1000 ILSVRC-2012 classes: index (sorted-wnid order, torchvision's standard), wnid, name.

Labels always come from wnid -> global index, never from folder enumeration order, so a folder holding a
subset of the classes still scores against the right logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class ClassTable:
    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.wnids)

    @property
    def index_of(self) -> dict[str, int]:
        return _index(self.wnids)

    def label(self, wnid: str) -> int:
        """Global class index of a wnid; a clear error for anything else."""
        try:
            return self.index_of[wnid]
        except KeyError:
            raise KeyError(f"{wnid!r} is not an ImageNet-1k wnid (expected e.g. 'n01440764')") from None


@lru_cache(maxsize=None)
def _index(wnids: tuple[str, ...]) -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids)}


@lru_cache(maxsize=1)
def imagenet_classes() -> ClassTable:
    """The project's own copy of the class table (robustbench_in/data/imagenet_classes.tsv)."""
    text = resources.files("robustbench_in.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    for expected, (index, _, _) in enumerate(rows):
        if int(index) != expected:
            raise ValueError(f"imagenet_classes.tsv: row {expected} has index {index}")
    return ClassTable(wnids=tuple(r[1] for r in rows), names=tuple(r[2] for r in rows))
