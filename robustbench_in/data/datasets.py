"""Datasets: ImageNet-val style folders, the flat val layout with a labels file, and the embedded default.

Every dataset is a list of :class:`ImageItem` (path, global label, stable image id); ``data/loader.py``
decodes them. Builders register by name (:func:`register_dataset`) and receive the ``data`` config keys.
"""

from __future__ import annotations

import csv
import difflib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from omegaconf import MISSING

from robustbench_in.data.classes import imagenet_classes

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}


class DatasetError(ValueError):
    """A dataset cannot be built as configured; the message says which key or file and what to do."""


@dataclass
class DataSpec:
    """The ``data`` config group: a registered dataset builder (``name``) and its keys."""

    name: str = MISSING
    root: Optional[str] = None
    labels_file: Optional[str] = None
    max_images: Optional[int] = None  # the first N images (null = all)

    def __post_init__(self) -> None:
        if self.max_images is not None and (isinstance(self.max_images, bool) or self.max_images < 1):
            raise DatasetError(f"data.max_images={self.max_images} is not a count: give N >= 1, or null for "
                               "every image")


@dataclass(frozen=True)
class ImageItem:
    path: Path
    label: int
    key: str  # stable name of the image inside the dataset (relative path); image_id derives from it
    alt_labels: tuple[int, ...] = ()  # further labels that also count as correct (embedded photos)

    @property
    def image_id(self) -> int:
        """Stable 32-bit id from the relative path: the same image gets the same seeds in every run."""
        return zlib.crc32(self.key.encode("utf-8")) & 0xFFFFFFFF


@dataclass
class ImageList:
    """A named, ordered list of images: what every dataset builder returns."""

    name: str
    items: list[ImageItem]
    root: str = ""
    notes: list[str] = field(default_factory=list)


DATASETS: dict[str, Callable[..., ImageList]] = {}


def register_dataset(name: str):
    """Decorator: register a dataset builder ``fn(root=..., labels_file=..., **_) -> ImageList`` under ``name``."""

    def decorator(fn):
        DATASETS[name] = fn
        return fn

    return decorator


def build_dataset(spec: DataSpec) -> ImageList:
    """The dataset a ``data`` spec asks for, cut to ``max_images``."""
    import robustbench_in.data.embedded  # noqa: F401  (registers the embedded default)

    if spec.name not in DATASETS:
        close = difflib.get_close_matches(spec.name, DATASETS, n=3)
        raise DatasetError(f"unknown dataset {spec.name!r}; known: {', '.join(sorted(DATASETS))}"
                           + (f" (did you mean {', '.join(close)}?)" if close else ""))
    images = DATASETS[spec.name](root=spec.root, labels_file=spec.labels_file)
    if spec.max_images is not None:
        images.items = images.items[:spec.max_images]
    return images


def _existing_dir(root, key: str = "data.root") -> Path:
    if root in (None, "", "???"):
        raise DatasetError(f"{key} is not set: pass {key}=/path/to/imagenet/val")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key}={root} does not exist or is not a folder: point it at an ImageNet val folder")
    return path


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


@register_dataset("auto")
def auto(root=None, labels_file=None, **_) -> ImageList:
    """The default: the embedded photos, or ``data.root`` when one is given — as a flat folder when
    ``data.labels_file`` is given too, else as a ``<wnid>/`` folder."""
    if root in (None, ""):
        if labels_file:
            raise DatasetError("data.labels_file is set but data.root is not: pass data.root=/path/to/images")
        return DATASETS["embedded"]()
    builder = imagenet_flat if labels_file else imagenet_folder
    images = builder(root=root, labels_file=labels_file)
    images.notes.insert(0, f"data.root given without data=...: reading it as {images.name}")
    return images


@register_dataset("imagenet_folder")
def imagenet_folder(root, **_) -> ImageList:
    """``root/<wnid>/*.JPEG`` with any subset of the 1000 classes; labels from the wnid, not folder order."""
    root = _existing_dir(root)
    table = imagenet_classes()
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    unknown = [d.name for d in class_dirs if d.name not in table.index_of]
    if unknown:
        raise DatasetError(f"data.root={root}: folder(s) {', '.join(unknown[:3])} are not ImageNet wnids; "
                           "expected root/<wnid>/*.JPEG (use data=imagenet_flat for a flat folder)")
    items = [
        ImageItem(path=f, label=table.label(d.name), key=f"{d.name}/{f.name}")
        for d in class_dirs for f in sorted(d.iterdir()) if _is_image(f)
    ]
    if not items:
        raise DatasetError(f"data.root={root} holds no images in <wnid>/ sub-folders")
    return ImageList(name="imagenet_folder", items=items, root=str(root))


def _read_labels(labels_file: Path) -> dict[str, int]:
    """File name -> global label from 'name label' lines (label = index or wnid) or LOC_val_solution.csv."""
    table = imagenet_classes()

    def parse(value: str) -> int:
        value = value.strip().split()[0]
        if value.isdigit():
            if not 0 <= int(value) < len(table):
                raise DatasetError(f"{labels_file}: label {value} is outside 0-999")
            return int(value)
        return table.label(value)

    text = labels_file.read_text(encoding="utf-8")
    labels: dict[str, int] = {}
    if text.startswith("ImageId,"):
        for row in csv.DictReader(text.splitlines()):
            labels[row["ImageId"]] = parse(row["PredictionString"])
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.replace(",", " ").split()
            if len(parts) < 2:
                raise DatasetError(f"{labels_file}:{n}: expected 'file label', got {line!r}")
            labels[Path(parts[0]).stem] = parse(parts[1])
    return labels


@register_dataset("imagenet_flat")
def imagenet_flat(root, labels_file=None, **_) -> ImageList:
    """The flat val layout (``root/ILSVRC2012_val_*.JPEG``) with a labels file (see :func:`_read_labels`)."""
    root = _existing_dir(root)
    if not labels_file:
        raise DatasetError("data.labels_file is not set: pass data.labels_file=/path/to/labels.txt "
                           "('<file> <index or wnid>' per line, or LOC_val_solution.csv)")
    labels_path = Path(str(labels_file)).expanduser()
    if not labels_path.is_file():
        raise DatasetError(f"data.labels_file={labels_file} does not exist")
    labels = _read_labels(labels_path)
    items, unlabeled = [], 0
    for f in sorted(p for p in root.iterdir() if _is_image(p)):
        label = labels.get(f.stem, labels.get(f.name))
        if label is None:
            unlabeled += 1
            continue
        items.append(ImageItem(path=f, label=label, key=f.name))
    if not items:
        raise DatasetError(f"data.root={root}: no image matches an entry of {labels_path}")
    notes = [f"{unlabeled} images without a label in {labels_path.name} were left out"] if unlabeled else []
    return ImageList(name="imagenet_flat", items=items, root=str(root), notes=notes)


@register_dataset("unlabelled")
def unlabelled(root, **_) -> ImageList:
    """Every image under ``root`` (any layout), without labels (label -1): for self-distillation
    (``task=train train.label_weight=0 train.distill.weight=1``), never for scoring."""
    root = _existing_dir(root)
    items = [ImageItem(path=f, label=-1, key=str(f.relative_to(root))) for f in sorted(root.rglob("*")) if _is_image(f)]
    if not items:
        raise DatasetError(f"data.root={root} holds no images")
    return ImageList(name="unlabelled", items=items, root=str(root))
