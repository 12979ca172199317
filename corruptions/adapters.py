"""Adapter: any albumentations transform as a corruption, with a severity -> parameters table.

Why an adapter and not a dependency: albumentations is handy for corruptions beyond ImageNet-C (sensor noise,
other weather, compression codecs), but the MIT-licensed 2.0.x line is archived and its successor is AGPL.
So it stays optional (``pip install 'albumentations<2.1'``), the ImageNet-C corruptions stay in our own code,
and it is imported lazily, with ``NO_ALBUMENTATIONS_UPDATE=1`` set first so it never reaches for the network.

A transform runs per image on CPU (uint8 HWC numpy, the library's native format), so these corruptions are
registered with ``runs_on="cpu"``. Every image's randomness comes from its own seed (the transform's random
state is re-seeded from ``seeds[i]`` before each image), so results do not depend on batch size or order.

Three ways in:

* Python: ``add_corruption(albumentations_corruption("iso_noise", "ISONoise", {1: {...}, ..., 5: {...}}))``;
* a suite entry (the testbed instantiates it with Hydra, ``robustbench_in.evaluate.suite``)::

      - _target_: corruptions.adapters.albumentations_corruption
        name: iso_noise
        transform: ISONoise
        severity_params: {1: {color_shift: [0.01, 0.02], intensity: [0.1, 0.2]}, ...}

* a YAML file holding such entries: :func:`register_albumentations_from_yaml` (or
  :func:`albumentations_corruptions_from_yaml` to build them without registering).
"""

from __future__ import annotations

import difflib
import importlib
import os
import random as _py_random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from corruptions.registry import SEVERITIES, Corruption, add_corruption

INSTALL_HINT = "pip install 'albumentations<2.1'"
ADAPTER_TARGET = f"{__name__}.albumentations_corruption"


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message says what to install."""


def import_albumentations():
    """The albumentations module, imported without its update check; a one-line error if it is missing."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError:
        raise MissingDependencyError(f"the albumentations adapter needs albumentations: {INSTALL_HINT}") from None
    return albumentations


def _major_version(module) -> int:
    try:
        return int(str(getattr(module, "__version__", "0")).split(".")[0])
    except ValueError:
        return 0


def _plain(value: Any) -> Any:
    """OmegaConf containers (what Hydra passes) -> dicts/lists; lists -> tuples (albumentations' ranges)."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def severity_table(severity_params: Any) -> dict[int, dict[str, Any]]:
    """Normalise a severity -> parameters table: keys 1-5 (ints or digit strings) or a list of 5 dicts."""
    table = _plain(severity_params)
    if isinstance(table, tuple):
        table = dict(enumerate(table, start=1))
    if not isinstance(table, Mapping):
        raise ValueError(f"severity_params must map severities 1-5 to parameter dicts, got {type(table).__name__}")
    out: dict[int, dict[str, Any]] = {}
    for key, params in table.items():
        try:
            severity = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"severity_params: key {key!r} is not a severity 1-5") from None
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(f"severity_params[{severity}] must be a dict of transform arguments, got {params!r}")
        out[severity] = dict(params or {})
    if sorted(out) != list(SEVERITIES):
        raise ValueError(f"severity_params needs exactly the severities 1-5, got {sorted(out)}")
    for severity, params in out.items():
        if params.get("p", 1.0) != 1.0:
            raise ValueError(f"severity_params[{severity}]: p must be 1 (a corruption is always applied)")
        params.pop("p", None)
    return dict(sorted(out.items()))


def transform_class(transform: str):
    """``"ISONoise"`` (a name in albumentations) or a dotted path ``"package.module.Class"`` -> the class."""
    albumentations = import_albumentations()
    if "." in transform:
        module_name, _, attr = transform.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError):
            raise ValueError(f"transform {transform!r} cannot be imported") from None
    cls = getattr(albumentations, transform, None)
    if not isinstance(cls, type):
        names = [n for n in dir(albumentations) if n[:1].isupper() and isinstance(getattr(albumentations, n), type)]
        close = difflib.get_close_matches(transform, names, n=3)
        raise ValueError(f"albumentations has no transform {transform!r}"
                         + (f": did you mean {', '.join(close)}?" if close else ""))
    return cls


def snake_case(name: str) -> str:
    """``ISONoise`` -> ``iso_noise``, ``RandomFog`` -> ``random_fog`` (the default corruption name)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class AlbumentationsCorruption:
    """The corruption function ``fn(images, severity, seeds)`` around one transform per severity."""

    def __init__(self, transform: str, table: dict[int, dict[str, Any]]):
        self.transform = transform
        self.table = table
        albumentations = import_albumentations()
        cls = transform_class(transform)
        strict = {"strict": True} if _major_version(albumentations) >= 2 else {}  # 2.x: typos raise
        try:
            self.transforms = {s: cls(**params, p=1.0, **strict) for s, params in table.items()}
        except (TypeError, ValueError) as err:
            reason = str(err).strip().split("\n")[0]
            raise ValueError(f"albumentations {cls.__name__}: bad severity_params ({reason})") from None
        self.class_name = cls.__name__

    def _apply(self, transform, image: np.ndarray, seed: int) -> np.ndarray:
        if hasattr(transform, "set_random_seed"):  # albumentations 2.x: the transform owns its generators
            transform.set_random_seed(seed)
            return transform(image=image)["image"]
        # albumentations 1.x draws from the global generators: seed them, then put their state back
        py_state, np_state = _py_random.getstate(), np.random.get_state()
        try:
            _py_random.seed(seed)
            np.random.seed(seed)
            return transform(image=image)["image"]
        finally:
            _py_random.setstate(py_state)
            np.random.set_state(np_state)

    def __call__(self, images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
        transform = self.transforms[int(severity)]
        pixels = images.detach().to("cpu", torch.float32).clamp(0, 1).mul(255).round_().to(torch.uint8)
        batch = pixels.permute(0, 2, 3, 1).contiguous().numpy()
        out = []
        for image, seed in zip(batch, seeds.tolist()):  # albumentations works one image at a time
            result = self._apply(transform, image, int(seed) % 2**32)
            if result.shape != image.shape:
                raise ValueError(f"albumentations {self.class_name} changed the image shape {image.shape} -> "
                                 f"{result.shape}; only pixel-level transforms can be corruptions")
            out.append(result.astype(np.float32) / 255.0 if result.dtype == np.uint8 else result.astype(np.float32))
        stacked = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
        return stacked.to(device=images.device, dtype=images.dtype).contiguous()

    def __repr__(self) -> str:
        return f"AlbumentationsCorruption({self.transform!r})"


def albumentations_corruption(name: str | None = None, transform: str = "", severity_params: Any = None,
                              category: str = "other", random: bool = True,
                              description: str | None = None) -> Corruption:
    """A :class:`Corruption` running the albumentations ``transform`` with ``severity_params[severity]``.

    ``transform``: a class name in albumentations (``"ISONoise"``) or a dotted path. ``severity_params``:
    ``{1: {...}, ..., 5: {...}}`` (int or string keys, dicts or DictConfigs; lists become tuples) — the
    transform's arguments at each severity, ``p`` is always 1. ``name`` defaults to the transform's name in
    snake case. ``random=False`` for a transform whose output does not depend on the seed (e.g.
    ImageCompression with a fixed quality). The result is not registered: see :func:`add_corruption` or
    :func:`register_albumentations_from_yaml`.
    """
    if not transform:
        raise ValueError("albumentations_corruption needs transform= (e.g. 'ISONoise')")
    if severity_params is None:
        raise ValueError(f"albumentations_corruption({transform!r}) needs severity_params for severities 1-5")
    fn = AlbumentationsCorruption(str(transform), severity_table(severity_params))
    version = getattr(import_albumentations(), "__version__", "?")
    params = {s: {"transform": fn.class_name, **p} for s, p in fn.table.items()}
    return Corruption(
        name=name or snake_case(fn.class_name), fn=fn, category=category, random=bool(random), params=params,
        description=description or f"albumentations {fn.class_name} ({version}), per image on CPU",
        runs_on="cpu",
    )


def _entries(data: Any) -> list[dict]:
    """The adapter entries of a suite-style YAML: ``corruptions: [...]``, a bare list, or ``name: entry``."""
    if isinstance(data, Mapping) and "corruptions" in data:
        data = data["corruptions"]
    if isinstance(data, Mapping):
        data = [{"name": k, **v} for k, v in data.items()]
    if not isinstance(data, list):
        raise ValueError("expected a list of corruption entries (or a suite with a 'corruptions' list)")
    return [e for e in data if isinstance(e, Mapping)
            and (e.get("_target_", ADAPTER_TARGET) == ADAPTER_TARGET and "transform" in e)]


def albumentations_corruptions_from_yaml(path: str | Path) -> list[Corruption]:
    """Build (without registering) the albumentations entries of a YAML file: a suite such as
    ``conf/suite/albumentations_example.yaml``, a list of entries, or a mapping name -> entry.

    Entries that are registry names or other ``_target_``s are left out."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return [albumentations_corruption(**{k: v for k, v in entry.items() if k not in ("_target_", "runs_on")})
            for entry in _entries(data)]


def register_albumentations_from_yaml(path: str | Path, overwrite: bool = False) -> list[str]:
    """Register every albumentations entry of a YAML file (see :func:`albumentations_corruptions_from_yaml`),
    so suites can name them like built-ins; returns the names."""
    return [add_corruption(c, overwrite=overwrite).name for c in albumentations_corruptions_from_yaml(path)]
