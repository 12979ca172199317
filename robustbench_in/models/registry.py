"""Model registries, timm-style: *sources* build architectures and load weights; the *zoo* names pretrained entries.

A source (``torchvision``, ``timm``, ``pip``, ``local``, ``checkpoint``, third-party ones through the
``robustbench_in.models`` entry points) turns (architecture name, weights tag) into an eval-mode module with its
preprocessing. A zoo entry (``efficientnet_lite1``) is one name for everything needed to run a pretrained
classifier: which source, which architecture, which weights and which preprocessing. ``model=<zoo entry>`` on the
command line selects one; ``model=torchvision model.name=convnext_tiny`` goes to a source directly.

Weights that cannot be found are an error that says where we looked — never silently random weights; random
init only with ``model.random_init=true``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from omegaconf import MISSING
from torch import nn

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.preprocessing import Preprocessing

ENTRY_POINT_GROUP = "robustbench_in.models"


class ModelError(ValueError):
    """A model cannot be built as configured; the message says what was looked for, where, and what to do."""


@dataclass
class ModelSpec:
    """The ``model`` config group: what to build. ``source: zoo`` (the default) reads ``name`` as a zoo entry;
    any other source reads it as an architecture of that source."""

    name: str = MISSING
    source: str = "zoo"
    label: Optional[str] = None  # the name results are reported under (default: name); also seeds random init
    weights: Optional[str] = None  # a weights tag of the source (torchvision: an enum name such as IMAGENET1K_V2)
    weights_file: Optional[str] = None  # weights from this file instead of the source's cache
    random_init: bool = False
    num_classes: int = 1000
    preprocessing: Preprocessing = field(default_factory=Preprocessing)  # overrides; null keeps the model's

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, int) and self.num_classes < 1:
            raise ModelError(f"model.num_classes={self.num_classes} must be >= 1")


@dataclass
class ModelEntry:
    """A ready-to-evaluate classifier: eval-mode module, its preprocessing and its class order.

    ``architecture`` is the (source, architecture name) that rebuilds the module without weights, which is
    what a checkpoint stores."""

    name: str
    module: nn.Module
    preprocessing: Preprocessing
    source: str
    weights: str
    architecture: tuple[str, str] = ("", "")
    num_outputs: int = 1000
    wnids: tuple[str, ...] = field(default_factory=lambda: imagenet_classes().wnids)


@dataclass(frozen=True)
class ZooEntry:
    """A pretrained classifier by name: the source and architecture that build it, its weights and what they
    were trained for (preprocessing fields left unset come from the source)."""

    name: str
    source: str
    arch: str
    weights: str | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    random_init: bool = False  # entries without pretrained weights (test models) default to random init
    description: str = ""


ModelSource = Callable[[ModelSpec], ModelEntry]
MODEL_SOURCES: dict[str, ModelSource] = {}
ZOO: dict[str, ZooEntry] = {}
_entry_points_loaded = False


def register_model_source(name: str):
    """Decorator: ``fn(spec) -> ModelEntry`` builds architectures of this source (``spec.name``)."""

    def decorator(fn: ModelSource) -> ModelSource:
        MODEL_SOURCES[name] = fn
        return fn

    return decorator


def register_zoo_entry(entry: ZooEntry) -> ZooEntry:
    ZOO[entry.name] = entry
    return entry


def _load_builtins_and_entry_points() -> None:
    """Built-in sources and zoo entries, then the plug-ins: a callable is a source, a ZooEntry an entry."""
    global _entry_points_loaded
    from robustbench_in.models import checkpoint, sources, zoo  # noqa: F401  (they register on import)

    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, ZooEntry):
            ZOO.setdefault(obj.name, obj)
        elif callable(obj):
            MODEL_SOURCES.setdefault(ep.name, obj)


def zoo_entries() -> dict[str, ZooEntry]:
    _load_builtins_and_entry_points()
    return dict(ZOO)


def _close(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def get_zoo_entry(name: str) -> ZooEntry:
    _load_builtins_and_entry_points()
    if name not in ZOO:
        raise ModelError(f"unknown model {name!r}: the zoo has {', '.join(ZOO)}{_close(name, ZOO)}; "
                         "other models through model=torchvision|timm|checkpoint")
    return ZOO[name]


def create_model(spec: ModelSpec) -> ModelEntry:
    """Build the model a spec asks for, apply its preprocessing overrides, put it in eval mode."""
    _load_builtins_and_entry_points()
    if spec.source not in MODEL_SOURCES:
        raise ModelError(f"unknown model source {spec.source!r}: use one of {', '.join(sorted(MODEL_SOURCES))}"
                         + _close(spec.source, MODEL_SOURCES))
    entry = MODEL_SOURCES[spec.source](spec)
    if entry.num_outputs != len(entry.wnids):
        raise ModelError(f"model {entry.name} has {entry.num_outputs} outputs but its class table names "
                         f"{len(entry.wnids)} ImageNet classes: a model with other outputs is evaluated from a "
                         "checkpoint that names its classes (model=checkpoint)")
    entry.name = spec.label or entry.name
    entry.preprocessing = entry.preprocessing.override(spec.preprocessing)
    if not entry.preprocessing.complete:
        raise ModelError(f"model {entry.name}: preprocessing is incomplete ({entry.preprocessing}); "
                         "set the missing model.preprocessing keys")
    entry.module.eval()
    return entry


@register_model_source("zoo")
def zoo_source(spec: ModelSpec) -> ModelEntry:
    """A zoo entry: its source builds it, with the entry's weights tag and preprocessing."""
    zoo = get_zoo_entry(spec.name)
    built = MODEL_SOURCES[zoo.source](replace(spec, source=zoo.source, name=zoo.arch,
                                              weights=spec.weights or zoo.weights,
                                              random_init=spec.random_init or zoo.random_init,
                                              preprocessing=Preprocessing()))
    built.name = spec.name
    built.preprocessing = built.preprocessing.override(zoo.preprocessing)
    return built
