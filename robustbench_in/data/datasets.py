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
    max_pixels: int = 64_000_000  # a file declaring more pixels is skipped before decoding (decompression bombs)
    clean_root: Optional[str] = None  # data=imagenet_c_folder: the clean val folder its clean cell is read from
    protocol: Optional[str] = None  # full (1000-way) | subset (logits restricted to the set's classes); null = default
    border_crop: Optional[int] = None  # pixels cut off every side after decoding; null = the set's own (ObjectNet: 2)

    def __post_init__(self) -> None:
        if self.max_images is not None and (isinstance(self.max_images, bool) or self.max_images < 1):
            raise DatasetError(f"data.max_images={self.max_images} is not a count: give N >= 1, or null for "
                               "every image")
        if self.protocol not in (None, "full", "subset"):
            raise DatasetError(f"data.protocol={self.protocol} is not a protocol: use full (1000-way logits), subset "
                               "(logits restricted to the data set's classes) or null (the data set's default)")
        if self.border_crop is not None and (isinstance(self.border_crop, bool) or self.border_crop < 0):
            raise DatasetError(f"data.border_crop={self.border_crop} is not a pixel count: give N >= 0, or null")
        if isinstance(self.max_pixels, bool) or self.max_pixels < 1:
            raise DatasetError(f"data.max_pixels={self.max_pixels} is not a pixel count: give N >= 1 "
                               "(default 64000000)")


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
    max_pixels: Optional[int] = 64_000_000  # decoding limit (``data.max_pixels``), applied by the loader
    #: global indices of the classes the set covers (ImageNet-R/-A: 200, ObjectNet: 113 overlapping classes);
    #: None = all 1000. With protocol "subset" the model's logits are restricted to them before scoring.
    class_subset: Optional[tuple[int, ...]] = None
    protocol: str = "full"  # full | subset: recorded in every row
    border_crop: int = 0  # pixels cut off every side right after decoding (ObjectNet's red frame)
    #: files already corrupted on disk (data=imagenet_c_folder): (corruption, severity) -> that folder's images,
    #: each evaluated as a cell of its own; ``items`` are then the clean images (possibly none)
    tree: Optional[dict[tuple[str, int], "ImageList"]] = None


DATASETS: dict[str, Callable[..., ImageList]] = {}


def register_dataset(name: str):
    """Decorator: register a dataset builder ``fn(root=..., labels_file=..., **_) -> ImageList`` under ``name``."""

    def decorator(fn):
        DATASETS[name] = fn
        return fn

    return decorator


def build_dataset(spec: DataSpec) -> ImageList:
    """The dataset a ``data`` spec asks for, cut to ``max_images``."""
    import robustbench_in.data.corrupted_tree  # noqa: F401  (registers imagenet_c_folder)
    import robustbench_in.data.embedded  # noqa: F401  (registers the embedded default)
    import robustbench_in.data.natural  # noqa: F401  (registers the natural-shift test sets)

    if spec.name not in DATASETS:
        close = difflib.get_close_matches(spec.name, DATASETS, n=3)
        raise DatasetError(f"unknown dataset {spec.name!r}; known: {', '.join(sorted(DATASETS))}"
                           + (f" (did you mean {', '.join(close)}?)" if close else ""))
    images = DATASETS[spec.name](root=spec.root, labels_file=spec.labels_file, clean_root=spec.clean_root)
    images.max_pixels = spec.max_pixels
    if spec.protocol == "subset" and images.class_subset is None:
        raise DatasetError(f"data.protocol=subset: {images.name} covers all 1000 classes, there is no subset to "
                           "restrict the logits to (use data.protocol=full)")
    images.protocol = spec.protocol or images.protocol
    images.border_crop = images.border_crop if spec.border_crop is None else spec.border_crop
    if spec.max_images is not None:
        for part in [images, *(images.tree or {}).values()]:
            part.items = part.items[:spec.max_images]
    return images


def _existing_dir(root, key: str = "data.root") -> Path:
    if root in (None, "", "???"):
        raise DatasetError(f"{key} is not set: pass {key}=/path/to/imagenet/val")
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{key}={root} does not exist or is not a folder: point it at an ImageNet val folder")
    return path


def _hidden(p: Path) -> bool:
    """Dot-files and dot-folders (.ipynb_checkpoints/, macOS ._* resource forks, .DS_Store) are not data."""
    return p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return not _hidden(p) and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES


@register_dataset("auto")
def auto(root=None, labels_file=None, clean_root=None, **_) -> ImageList:
    """The default: the embedded photos, or ``data.root`` when one is given — as a flat folder when
    ``data.labels_file`` is given too, as an ImageNet-C tree when its folders hold severity folders, else as a
    ``<wnid>/`` folder."""
    if root in (None, ""):
        if labels_file:
            raise DatasetError("data.labels_file is set but data.root is not: pass data.root=/path/to/images")
        return DATASETS["embedded"]()
    name = "imagenet_flat" if labels_file else "imagenet_c_folder" if _looks_like_tree(root) else "imagenet_folder"
    images = DATASETS[name](root=root, labels_file=labels_file, clean_root=clean_root)
    images.notes.insert(0, f"data.root given without data=...: reading it as {images.name}")
    return images


def _looks_like_tree(root) -> bool:
    """``root/<corruption>/<1-5>/...``: no wnid folders at the top, and severity folders under the first one."""
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        return False
    top = sorted(d for d in path.iterdir() if d.is_dir() and not _hidden(d))
    if not top or any(d.name in imagenet_classes().index_of for d in top):
        return False
    return any(c.is_dir() and c.name in {"1", "2", "3", "4", "5"} for c in top[0].iterdir())


@register_dataset("imagenet_folder")
def imagenet_folder(root, key: str = "data.root", **_) -> ImageList:
    """``root/<wnid>/*.JPEG`` with any subset of the 1000 classes; labels from the wnid, not folder order."""
    root = _existing_dir(root, key)
    table = imagenet_classes()
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(d))
    unknown = [d.name for d in class_dirs if d.name not in table.index_of]
    if unknown:
        raise DatasetError(f"{key}={root}: folder(s) {', '.join(unknown[:3])} are not ImageNet wnids; "
                           "expected root/<wnid>/*.JPEG (use data=imagenet_flat for a flat folder)")
    items = [
        ImageItem(path=f, label=table.label(d.name), key=f"{d.name}/{f.name}")
        for d in class_dirs for f in sorted(d.iterdir()) if _is_image(f)
    ]
    if not items:
        raise DatasetError(f"{key}={root} holds no images in <wnid>/ sub-folders")
    return ImageList(name="imagenet_folder", items=items, root=str(root))


LOC_HEADER = ("ImageId", "PredictionString")


def _label_lines(labels_file: Path) -> list[tuple[int, str, str]]:
    """(line number, file name, label text) of every entry: 'name label' lines, or LOC_val_solution.csv."""
    try:
        text = labels_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"{labels_file} is not a text labels file (not UTF-8): expected '<file> <index or "
                           "wnid>' per line, or LOC_val_solution.csv") from None
    lines = text.splitlines()
    if lines and lines[0].startswith("ImageId"):
        header = next(csv.reader(lines[:1]))
        if tuple(h.strip() for h in header[:2]) != LOC_HEADER:
            raise DatasetError(f"{labels_file}:1: header {lines[0]!r}; expected 'ImageId,PredictionString' "
                               "(LOC_val_solution.csv)")
        rows = csv.reader(lines[1:])
        return [(n, row[0].strip(), row[1] if len(row) > 1 else "") for n, row in enumerate(rows, 2)
                if any(cell.strip() for cell in row)]
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split(maxsplit=1)
        out.append((n, parts[0], parts[1] if len(parts) > 1 else ""))
    return out


def _parse_label(value: str, where: str) -> int:
    """A global label from an index (0-999) or a wnid (the first word: LOC's PredictionString adds boxes)."""
    words = value.split()
    if not words:
        raise DatasetError(f"{where}: the label is empty; expected a class index 0-999 or a wnid")
    word = words[0]
    table = imagenet_classes()
    if word.isdigit() and int(word) < len(table):
        return int(word)
    if word in table.index_of:
        return table.label(word)
    raise DatasetError(f"{where}: label {word!r} is neither a class index 0-999 nor an ImageNet wnid")


def _read_labels(labels_file: Path) -> dict[str, int]:
    """File name (and stem) -> global label. A repeated file with another label, an empty or unknown label, a
    wrong header or a file without entries is a one-line error naming the file and line."""
    labels: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for n, name, value in _label_lines(labels_file):
        label = _parse_label(value, f"{labels_file}:{n}")
        for key in {name, Path(name).stem}:
            if labels.get(key, label) != label:
                raise DatasetError(f"{labels_file}:{n}: {name} is labelled {label} here but {labels[key]} on "
                                   f"line {first_line[key]}: each file needs one label")
            labels[key], first_line[key] = label, first_line.get(key, n)
    if not labels:
        raise DatasetError(f"{labels_file} holds no labels: expected '<file> <index or wnid>' per line, or "
                           "LOC_val_solution.csv")
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
        label = labels.get(f.name, labels.get(f.stem))
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
    files = (f for f in sorted(root.rglob("*")) if not any(map(_hidden, f.relative_to(root).parents[:-1])))
    items = [ImageItem(path=f, label=-1, key=str(f.relative_to(root))) for f in files if _is_image(f)]
    if not items:
        raise DatasetError(f"data.root={root} holds no images")
    return ImageList(name="unlabelled", items=items, root=str(root))
