"""Checkpoints of this project (source ``checkpoint``): the weights plus everything needed to evaluate them.

A checkpoint is a plain dict of tensors, strings and numbers (loadable with ``weights_only=True``) holding the
architecture (source, name, class count), the class order (wnids), the preprocessing and whatever the writer
adds (training config, metrics, versions). ``model=checkpoint model.weights_file=FILE`` evaluates it with the
preprocessing it was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.preprocessing import Preprocessing
from robustbench_in.files import atomic_write
from robustbench_in.models.registry import MODEL_SOURCES, ModelEntry, ModelError, ModelSpec, register_model_source
from robustbench_in.models.weights import load_into, torch_load

CHECKPOINT_FORMAT = "robustbench_in.checkpoint/1"


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, or a one-line ModelError saying what the file is instead."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.weights_file={path} does not exist")
    ckpt = torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        what = (f"a dict with keys {', '.join(sorted(map(str, ckpt))[:5])}" if isinstance(ckpt, dict)
                else f"a {type(ckpt).__name__}")
        raise ModelError(f"{path} is not a robustbench_in checkpoint (expected format {CHECKPOINT_FORMAT}, found "
                         f"{what}); plain weights go in model.weights_file of their own source")
    return ckpt


def check_class_table(wnids: list[str] | tuple[str, ...], num_classes: int, origin: str) -> tuple[str, ...]:
    """A model's class order must name distinct ImageNet wnids, one per output, or nothing can be scored."""
    index = imagenet_classes().index_of
    wnids = tuple(wnids)
    if len(wnids) != num_classes:
        raise ModelError(f"{origin}: {num_classes} outputs but {len(wnids)} wnids in its class table")
    if len(set(wnids)) != len(wnids):
        raise ModelError(f"{origin}: its class table repeats wnids")
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise ModelError(f"{origin}: class table holds non-ImageNet wnids ({', '.join(unknown[:3])})")
    return wnids


@register_model_source("checkpoint")
def checkpoint_model(spec: ModelSpec) -> ModelEntry:
    """A file written by :func:`save_checkpoint`: architecture, weights, preprocessing, class order."""
    if not spec.weights_file:
        raise ModelError("model=checkpoint needs model.weights_file=/path/to/checkpoint.pt")
    path = Path(spec.weights_file).expanduser()
    ckpt = read_checkpoint(path)
    source, arch = ckpt["architecture"]
    num_classes = int(ckpt.get("num_classes", 1000))
    if source not in MODEL_SOURCES:
        raise ModelError(f"{path}: architecture source {source!r} is not available here")
    entry = MODEL_SOURCES[source](ModelSpec(source=source, name=arch, random_init=True, num_classes=num_classes))
    load_into(entry.module, ckpt["state_dict"], str(path))
    entry.preprocessing = Preprocessing(**ckpt["preprocessing"])
    entry.wnids = check_class_table(ckpt.get("wnids") or imagenet_classes().wnids, num_classes, str(path))
    entry.name = spec.name if spec.name not in ("", "checkpoint") else default_name(ckpt, path)
    entry.weights, entry.source = path.name, "checkpoint"
    return entry


def default_name(ckpt: dict, path: Path) -> str:
    """How a checkpoint is reported unless ``model.label`` says otherwise: the model it was trained from plus the
    recipe (``efficientnet_lite0+robust_finetune``), so it never shares a name with its starting point; a
    checkpoint other than ``last.pt`` adds its file stem (``...+robust_finetune-best``)."""
    recipe = ((ckpt.get("train") or {}).get("config") or {}).get("train", {}).get("name")
    name = f"{ckpt.get('name', 'model')}+{recipe or path.stem}"
    return name if path.stem in ("last", recipe) or not recipe else f"{name}-{path.stem}"


def checkpoint_payload(entry: ModelEntry, **extra) -> dict:
    """What a checkpoint of ``entry`` holds (CPU tensors, plain types), plus ``extra`` keys."""
    state = {k: v.detach().cpu() for k, v in entry.module.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "name": entry.name, "architecture": list(entry.architecture),
            "num_classes": len(entry.wnids), "state_dict": state, "preprocessing": entry.preprocessing.as_dict(),
            "wnids": list(entry.wnids), **extra}


def save_checkpoint(path: str | Path, entry: ModelEntry, **extra) -> Path:
    """Write (atomically) a checkpoint that ``model=checkpoint`` can load offline with ``weights_only=True``."""
    payload = checkpoint_payload(entry, **extra)
    return atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))
