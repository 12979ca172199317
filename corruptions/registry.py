"""Registry of corruptions: register by name, look up with close-match errors, discover plug-ins.

A corruption is a callable ``fn(images, severity, seeds) -> images`` (see ``corruptions/__init__.py``
for the full contract). Built-ins register with :func:`register_corruption`; third-party packages
expose theirs through the entry-point group ``robustbench_in.corruptions`` (an entry point may name a
module, which registers on import, or a callable / :class:`Corruption`, which is registered under the
entry point's name).
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

ENTRY_POINT_GROUP = "robustbench_in.corruptions"
SEVERITIES = (1, 2, 3, 4, 5)
CATEGORIES = ("noise", "blur", "weather", "digital", "sensor", "cbar", "other")
# The benchmark sets the built-ins belong to, in the order :func:`list_corruptions` lists them: the 15 ImageNet-C
# benchmark corruptions (those mCE averages over), its 4 held-out "extra" ones, the camera/sensor shifts, then the
# 10 ImageNet-C-bar ones (Mintun, Kirillov & Xie, NeurIPS 2021).
BENCHMARKS = ("imagenet_c", "imagenet_c_extra", "sensor", "imagenet_c_bar")

CorruptionFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]
# The same corruption on 8-bit grey levels: uint8 (N, 3, H, W) -> uint8 levels (see Corruption.levels_fn).
LevelsFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


class CorruptionInputError(ValueError):
    """Raised for images a corruption cannot take (wrong shape or dtype, values outside [0, 1], NaN/inf): a
    corruption would otherwise clip or zero them silently and score garbage."""


class UnknownCorruptionError(KeyError):
    """Raised for a corruption name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, eq=False)  # identity hashing: params may hold dicts
class Corruption:
    """A registered corruption: the function plus what a user or report needs to know about it.

    ``runs_on`` is ``"any"`` for batched torch ops (run on the evaluation device) or ``"cpu"`` for
    ops backed by CPU libraries (e.g. the albumentations adapter), which the engine applies on CPU.
    ``benchmark`` names the benchmark set a corruption belongs to (one of :data:`BENCHMARKS` for the
    built-ins, ``""`` for none): ``corruptions.IMAGENET_C`` and the like are read from it, so the
    published lists are written down once, where the corruptions register.

    ``levels_fn`` (optional) is the same corruption for corruptions whose result lies on the 8-bit grid anyway
    (pixelate, jpeg_compression, motion_blur: they read their input as grey levels too, like the reference's
    uint8 images): uint8 levels (N, 3, H, W) in, uint8 levels out, equal to ``round(255 * fn(levels / 255))``
    exactly. The engine runs it on its decoded uint8 images (:func:`apply_corruption_levels`), which skips the
    float conversions around it; ``tests/test_corruption_contract.py`` checks the equality for every corruption
    that has one.
    """

    name: str
    fn: CorruptionFn
    category: str = "other"
    random: bool = True
    params: Mapping[int, Any] = field(default_factory=dict)
    description: str = ""
    runs_on: str = "any"
    benchmark: str = ""
    levels_fn: LevelsFn | None = None

    def __call__(self, images: torch.Tensor, severity: int, seeds: torch.Tensor, *,
                 check_input: bool = True) -> torch.Tensor:
        return apply_corruption(self, images, severity, seeds, check_input=check_input)


_REGISTRY: dict[str, Corruption] = {}
_entry_points_loaded = False


def register_corruption(
    name: str,
    *,
    category: str = "other",
    random: bool = True,
    params: Mapping[int, Any] | None = None,
    description: str | None = None,
    runs_on: str = "any",
    benchmark: str = "",
    levels_fn: LevelsFn | None = None,
    overwrite: bool = False,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator that registers ``fn(images, severity, seeds)`` under ``name`` (``levels_fn``: its 8-bit twin,
    see :class:`Corruption`).

    Returns the undecorated function, so it stays usable as a plain functional op.
    """

    def decorator(fn: CorruptionFn) -> CorruptionFn:
        add_corruption(
            Corruption(
                name=name,
                fn=fn,
                category=category,
                random=random,
                params=dict(params or {}),
                description=description if description is not None else first_paragraph(fn.__doc__),
                runs_on=runs_on,
                benchmark=benchmark,
                levels_fn=levels_fn,
            ),
            overwrite=overwrite,
        )
        return fn

    return decorator


def first_paragraph(doc: str | None) -> str:
    """The docstring's first paragraph on one line (what a catalogue or an error message shows)."""
    para = (doc or "").strip().split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def add_corruption(corruption: Corruption, *, overwrite: bool = False) -> Corruption:
    """Register an already-built :class:`Corruption` (used by adapters and entry points)."""
    if not corruption.name.isidentifier():
        raise ValueError(f"corruption name {corruption.name!r} must be a Python identifier (letters, digits, _)")
    existing = _REGISTRY.get(corruption.name)
    if existing is not None and not overwrite and existing.fn is not corruption.fn:
        raise ValueError(f"corruption {corruption.name!r} is already registered (by {existing.fn.__module__}); "
                         "pick another name or pass overwrite=True")
    _REGISTRY[corruption.name] = corruption
    return corruption


def unregister_corruption(name: str) -> None:
    _REGISTRY.pop(name, None)


def load_entry_points(force: bool = False) -> list[str]:
    """Import the plug-ins advertised under ``robustbench_in.corruptions``; returns the names loaded."""
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, Corruption):
            add_corruption(obj if obj.name == ep.name else Corruption(**{**obj.__dict__, "name": ep.name}),
                           overwrite=True)
        elif callable(obj) and not isinstance(obj, type(importlib)):
            if ep.name not in _REGISTRY:
                add_corruption(Corruption(name=ep.name, fn=obj, description=(obj.__doc__ or "").strip()))
        loaded.append(ep.name)
    return loaded


def _ensure_builtins() -> None:
    import corruptions  # noqa: F401  (importing the package registers the built-ins)

    load_entry_points()


def get_corruption(name: str) -> Corruption:
    """Look up a corruption by name; an unknown name raises with the closest valid names."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid names: {', '.join(sorted(_REGISTRY))}"
        raise UnknownCorruptionError(f"unknown corruption {name!r}: {hint}") from None


def list_corruptions(category: str | None = None, *, benchmark: str | None = None) -> list[str]:
    """Registered corruption names, optionally only those of one category and/or one benchmark set.

    Order: the benchmark sets of :data:`BENCHMARKS` first, set by set, then everything else; within each, the
    registration order (for the built-ins the published one, e.g. ImageNet-C's gaussian_noise ... jpeg_compression).
    """
    _ensure_builtins()
    return registered_names(category, benchmark=benchmark)


def registered_names(category: str | None = None, *, benchmark: str | None = None) -> list[str]:
    """:func:`list_corruptions` of the registry as it stands, without loading entry points first (safe while
    ``corruptions`` itself is being imported, which is how ``corruptions.IMAGENET_C`` is derived)."""
    rank = {name: i for i, name in enumerate(BENCHMARKS)}
    chosen = [c for c in _REGISTRY.values()
              if (category is None or c.category == category) and (benchmark is None or c.benchmark == benchmark)]
    chosen.sort(key=lambda c: rank.get(c.benchmark, len(BENCHMARKS)))  # stable: registration order within a set
    return [c.name for c in chosen]


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or int(severity) != severity or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer 1-5, got {severity!r}")
    return int(severity)


#: How far outside [0, 1] a float pixel may lie and still pass :func:`check_images` (float arithmetic such as
#: ``x / 255 * 255 / 255`` lands a few ulps off); corruption outputs are clipped to [0, 1] anyway.
INPUT_TOLERANCE = 1e-5


def check_layout(name: str, images: torch.Tensor) -> None:
    """Reject anything but a float (N, 3, H, W) batch: free (no pass over the data), so always done."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        hint = "" if images.is_floating_point() else " (8-bit images: x.float() / 255)"
        raise CorruptionInputError(f"{name}: images must be a float tensor (N, 3, H, W) in [0, 1], got "
                                   f"{tuple(images.shape)} {images.dtype}{hint}")


def check_images(name: str, images: torch.Tensor) -> None:
    """Reject images a corruption would silently mangle: not float (N, 3, H, W), values outside [0, 1], NaN/inf.

    One ``aminmax`` over the batch in the common case (NaN fails both comparisons); the details (finite range, how
    many non-finite values) are only computed for the error message.
    """
    check_layout(name, images)
    if images.numel() == 0:
        return
    lo, hi = torch.aminmax(images.detach())
    if bool((lo >= -INPUT_TOLERANCE) & (hi <= 1.0 + INPUT_TOLERANCE)):  # one device sync
        return
    finite = torch.isfinite(images.detach())
    bad = int(images.numel() - finite.sum())
    found = f"{bad} non-finite value(s) (NaN/inf)" if bad else ""
    if bad < images.numel():
        lo, hi = torch.aminmax(images.detach()[finite])
        if bool(lo < -INPUT_TOLERANCE) or bool(hi > 1.0 + INPUT_TOLERANCE):
            found = ", ".join(filter(None, [f"values in [{float(lo):.4g}, {float(hi):.4g}]", found]))
    raise CorruptionInputError(
        f"{name}: images must be finite floats in [0, 1], found {found}; scale them to [0, 1] first (e.g. "
        "x.float() / 255 for 8-bit images, (x + 1) / 2 for [-1, 1]), or pass check_input=False to skip this check")


def check_seeds(name: str, seeds: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """One int64 seed per image, on the images' device; any other shape raises, naming the corruption."""
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"{name}: seeds must have shape ({images.shape[0]},), got {tuple(seeds.shape)}")
    return seeds.to(images.device)


def apply_corruption(corruption: Corruption | str, images: torch.Tensor, severity: int,
                     seeds: torch.Tensor, *, check_input: bool = True) -> torch.Tensor:
    """Run a corruption with the contract enforced: validated inputs, new memory, finite, clipped to [0, 1].

    ``check_input=False`` skips the value check of :func:`check_images` (one pass over the batch and a device sync)
    for callers that already know their images are in [0, 1]; shape, dtype and seeds are checked either way.
    """
    if isinstance(corruption, str):
        corruption = get_corruption(corruption)
    severity = check_severity(severity)
    (check_images if check_input else check_layout)(corruption.name, images)
    out = corruption.fn(images, severity, check_seeds(corruption.name, seeds, images))
    if out.data_ptr() == images.data_ptr():
        out = out.clone()
    if out.device.type == "cpu" and out.numel():  # one read says whether there is anything to clean (NaN fails)
        low, high = torch.aminmax(out)
        if bool(low >= 0.0) and bool(high <= 1.0):
            return out.to(images.dtype)
    # ``out`` is the corruption's own memory now, so clean it up in place (one pass less over the batch).
    return out.nan_to_num_(nan=0.0).clamp_(0.0, 1.0).to(images.dtype)


def apply_corruption_levels(corruption: Corruption | str, levels: torch.Tensor, severity: int,
                            seeds: torch.Tensor) -> torch.Tensor:
    """Run a corruption's ``levels_fn`` on uint8 grey levels (N, 3, H, W): uint8 levels out, new memory, equal to
    ``round(255 * apply_corruption(corruption, levels / 255, ...))``. For corruptions without one, raises."""
    if isinstance(corruption, str):
        corruption = get_corruption(corruption)
    if corruption.levels_fn is None:
        raise ValueError(f"{corruption.name} has no 8-bit version (levels_fn); use apply_corruption on floats")
    severity = check_severity(severity)
    if levels.ndim != 4 or levels.shape[1] != 3 or levels.dtype != torch.uint8:
        raise CorruptionInputError(f"{corruption.name}: levels must be a uint8 tensor (N, 3, H, W), got "
                                   f"{tuple(levels.shape)} {levels.dtype}")
    out = corruption.levels_fn(levels, severity, check_seeds(corruption.name, seeds, levels))
    if out.dtype != torch.uint8 or out.shape != levels.shape:
        raise TypeError(f"{corruption.name}: levels_fn returned {tuple(out.shape)} {out.dtype}, expected "
                        f"{tuple(levels.shape)} uint8")
    return out.clone() if out.data_ptr() == levels.data_ptr() else out
