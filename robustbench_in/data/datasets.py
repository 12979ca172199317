"""Datasets: ImageNet-val style folders, the flat val layout with a labels file, and the embedded default.

Every dataset is a list of :class:`ImageItem` (path, global label, stable image id) read by one loader
that decodes each image once, converts it to RGB, applies the model's geometry and yields uint8 crops.
An unreadable or truncated image is skipped, counted and reported by the loader — never a crash.
"""

from __future__ import annotations

import csv
import difflib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from robustbench_in.classes import imagenet_classes
from robustbench_in.preprocessing import Preprocessing

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
MAX_ALT_LABELS = 4


class DatasetError(ValueError):
    """A dataset cannot be built as configured; the message says which key or file and what to do."""


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
    """Decorator: register a dataset builder ``fn(**cfg) -> ImageList`` under ``name``."""

    def decorator(fn):
        DATASETS[name] = fn
        return fn

    return decorator


def build_dataset(name: str, **kwargs) -> ImageList:
    """Build a registered dataset from its config keys (``data.*``)."""
    import robustbench_in.embedded  # noqa: F401  (registers the embedded default)

    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=3)
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
                           + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return DATASETS[name](**kwargs)


def _existing_dir(root, key: str = "data.root") -> Path:
    if root in (None, "", "???"):
        raise DatasetError(f"{key} is not set: pass {key}=/path/to/imagenet/val")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key}={root} does not exist or is not a folder: point it at an ImageNet val folder")
    return path


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


@register_dataset("imagenet_folder")
def imagenet_folder(root, max_images: int | None = None, **_) -> ImageList:
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
    return ImageList(name="imagenet_folder", items=items[:max_images] if max_images else items, root=str(root))


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
def imagenet_flat(root, labels_file=None, max_images: int | None = None, **_) -> ImageList:
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
    return ImageList(name="imagenet_flat", items=items[:max_images] if max_images else items, root=str(root),
                     notes=notes)


# ---------------------------------------------------------------------------------------------- loading


class ImageDataset(Dataset):
    """Decodes an :class:`ImageList` with a model's geometry; a bad file yields a skip record."""

    def __init__(self, images: ImageList, preprocessing: Preprocessing):
        self.images = images
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.images.items)

    def __getitem__(self, index: int):
        item = self.images.items[index]
        try:
            with Image.open(item.path) as img:
                img.load()
                rgb = img.convert("RGB")
            crop = self.preprocessing.geometry(rgb)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            reason = str(err).split("\n")[0] or type(err).__name__
            return {"skipped": (str(item.path), reason)}
        alt = list(item.alt_labels[:MAX_ALT_LABELS]) + [-1] * (MAX_ALT_LABELS - len(item.alt_labels[:MAX_ALT_LABELS]))
        return {
            "image": torch.from_numpy(np.array(crop, dtype=np.uint8, copy=True)).permute(2, 0, 1),
            "label": item.label,
            "alt_labels": alt,
            "image_id": item.image_id,
            "index": index,
        }


def collate(samples: list[dict]) -> dict:
    """Stack the good samples; pass the skipped ones through as (path, reason)."""
    good = [s for s in samples if "skipped" not in s]
    batch = {"skipped": [s["skipped"] for s in samples if "skipped" in s]}
    if good:
        batch["images"] = torch.stack([s["image"] for s in good])
        batch["labels"] = torch.tensor([s["label"] for s in good], dtype=torch.int64)
        batch["alt_labels"] = torch.tensor([s["alt_labels"] for s in good], dtype=torch.int64)
        batch["image_ids"] = torch.tensor([s["image_id"] for s in good], dtype=torch.int64)
        batch["index"] = torch.tensor([s["index"] for s in good], dtype=torch.int64)
    return batch


def make_loader(images: ImageList, preprocessing: Preprocessing, batch_size: int, workers: int,
                indices: list[int] | None = None, pin_memory: bool = False) -> DataLoader:
    """Batches of uint8 crops in dataset order (optionally a subset of indices, e.g. one shard)."""
    dataset: Dataset = ImageDataset(images, preprocessing)
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False)
