"""Natural-distribution-shift test sets in the folder layouts they ship in: ImageNet-V2, -Sketch, -R, -A, ObjectNet.

Every builder turns its layout into global ImageNet labels (torchvision's sorted-wnid indices). ImageNet-R, -A and
ObjectNet cover only some classes: they set ``class_subset`` and default to the "subset" protocol (the model's
logits restricted to those classes, as their papers score); ``data.protocol=full`` scores them 1000-way. A layout
that does not match is one DatasetError that says what was expected and what was found. The sources of the class
lists and of the ObjectNet border width are in docs/datasets.md ("Natural distribution shifts").
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from functools import lru_cache
from importlib import resources
from pathlib import Path

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import (DatasetError, ImageItem, ImageList, _existing_dir, _hidden, _is_image,
                                          imagenet_folder, register_dataset)
from robustbench_in.data.loader import MAX_ALT_LABELS

#: data set name -> its packaged class list (one wnid a line; '#' lines cite the source)
SUBSET_LISTS = {"imagenet_r": "imagenet_r_wnids.txt", "imagenet_a": "imagenet_a_wnids.txt"}
#: Pixels cut off every side of an ObjectNet image before the usual resize and crop. ObjectNet's license calls the
#: frame a "1 pixel red border"; the official starter code (abarbu/objectnet-template-pytorch,
#: objectnet_pytorch_dataloader.py: ``cropArea = (2, 2, width-2, height-2)``, README: "crops out 2 pixel red
#: border") and Taori et al.'s testbed (modestyachts/imagenet-testbed, src/eval_settings/objectnet.py,
#: ``crop_image(border=2)``) cut 2, which we follow. ``ImageList.border_crop`` holds it per data set.
OBJECTNET_BORDER = 2
#: objectnet-1.0/mappings/: folder -> ObjectNet label; label -> "ImageNet name; ImageNet name"; torchvision index
#: -> line of imagenet_to_label_2012_v2; that file's lines are the ImageNet names.
OBJECTNET_MAPPINGS = ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json",
                      "pytorch_to_imagenet_2012_id.json", "imagenet_to_label_2012_v2")
CLASS_INDEX = re.compile(r"0|[1-9][0-9]{0,2}")  # ImageNet-V2 folder names: 0 ... 999, written without leading zeros


def _found(folder: Path, limit: int = 4) -> str:
    """What a folder holds, for error messages: counts and the first names of its sub-folders and files."""
    entries = sorted(p for p in folder.iterdir() if not _hidden(p))
    parts = []
    for kind, names in (("folder", [p.name + "/" for p in entries if p.is_dir()]),
                        ("file", [p.name for p in entries if not p.is_dir()])):
        if names:
            more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
            parts.append(f"{len(names)} {kind}{'s' * (len(names) > 1)}: {', '.join(names[:limit])}{more}")
    return "; ".join(parts) or "nothing"


def _names(names: list[str], limit: int = 3) -> str:
    """The first few of a list of names, and how many more there are."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _class_dirs(root: Path, layout: str) -> list[Path]:
    """The class folders of ``root`` (hidden ones ignored); images lying in ``root`` itself are a wrong depth."""
    if any(_is_image(p) for p in root.iterdir()):
        raise DatasetError(f"data.root={root}: images lie directly in it, not in class folders; expected {layout} "
                           f"(found {_found(root)})")
    return sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(d))


def _items(root: Path, dirs: list[Path], labels: dict[str, tuple[int, ...]], layout: str) -> list[ImageItem]:
    """The images of the class folders, labelled by folder name (first label + further accepted ones)."""
    items = [ImageItem(path=f, label=labels[d.name][0], key=f"{d.name}/{f.name}", alt_labels=labels[d.name][1:])
             for d in dirs for f in sorted(d.iterdir()) if _is_image(f)]
    if not items:
        first = f"; {dirs[0].name}/ holds {_found(dirs[0])}" if dirs else ""
        raise DatasetError(f"data.root={root}: no images in its {len(dirs)} class folders{first}; expected {layout}")
    return items


@register_dataset("imagenet_v2")
def imagenet_v2(root, **_) -> ImageList:
    """ImageNet-V2 (any variant): ``root/<k>/*.jpeg`` with k the class index 0-999. The label is int(folder name):
    the names sorted as strings ("0", "1", "10", "100", ...) would silently mislabel 988 of the 1000 classes."""
    layout = "root/<class index 0-999>/*.jpeg"
    root = _existing_dir(root)
    dirs = _class_dirs(root, layout)
    bad = [d.name for d in dirs if not CLASS_INDEX.fullmatch(d.name)]
    if bad or not dirs:
        what = f"folder(s) {_names(bad)} are not class indices 0-999" if bad else "no class folders"
        hint = ("; these are wnids: read this older layout with data=imagenet_folder"
                if bad and all(b in imagenet_classes().index_of for b in bad) else "")
        raise DatasetError(f"data.root={root}: {what}; expected {layout} (found {_found(root)}){hint}")
    dirs.sort(key=lambda d: int(d.name))
    items = _items(root, dirs, {d.name: (int(d.name),) for d in dirs}, layout)
    return ImageList(name="imagenet_v2", items=items, root=str(root))


@register_dataset("imagenet_sketch")
def imagenet_sketch(root, **_) -> ImageList:
    """ImageNet-Sketch: ``root/<wnid>/*`` over all 1000 classes, scored 1000-way (the imagenet_folder rules)."""
    images = imagenet_folder(root)
    images.name = "imagenet_sketch"
    return images


@lru_cache(maxsize=None)
def subset_wnids(name: str) -> tuple[str, ...]:
    """The classes of a 200-class set, from its packaged list (see SUBSET_LISTS)."""
    text = resources.files("robustbench_in.data").joinpath(SUBSET_LISTS[name]).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def subset_indices(name: str) -> tuple[int, ...]:
    """The global indices of a 200-class set, sorted: the logits the "subset" protocol keeps."""
    return tuple(sorted(imagenet_classes().label(w) for w in subset_wnids(name)))


def _subset_set(name: str, root) -> ImageList:
    """``root/<wnid>/*`` of a 200-class set; a folder that is not one of the set's classes is an error."""
    layout = f"root/<wnid listed in robustbench_in/data/{SUBSET_LISTS[name]}>/*.jpg"
    root = _existing_dir(root)
    table = imagenet_classes()
    dirs = _class_dirs(root, layout)
    outside = [d.name for d in dirs if d.name not in set(subset_wnids(name))]
    if outside or not dirs:
        what = (f"folder(s) {_names(outside)} are not among the {len(subset_wnids(name))} {name} classes"
                if outside else "no class folders")
        hint = ("; for an ImageNet folder of any classes use data=imagenet_folder"
                if outside and all(w in table.index_of for w in outside) else "")
        raise DatasetError(f"data.root={root}: {what}; expected {layout} (found {_found(root)}){hint}")
    items = _items(root, dirs, {d.name: (table.label(d.name),) for d in dirs}, layout)
    return ImageList(name=name, items=items, root=str(root), class_subset=subset_indices(name), protocol="subset")


@register_dataset("imagenet_r")
def imagenet_r(root, **_) -> ImageList:
    """ImageNet-R: 200 classes in wnid folders; logits restricted to them unless ``data.protocol=full``."""
    return _subset_set("imagenet_r", root)


@register_dataset("imagenet_a")
def imagenet_a(root, **_) -> ImageList:
    """ImageNet-A: another 200 classes in wnid folders; logits restricted to them unless ``data.protocol=full``."""
    return _subset_set("imagenet_a", root)


def _mapping_dir(root: Path) -> Path:
    """``root/mappings`` when it holds every mapping file; else one error naming the missing ones."""
    mappings = root / "mappings"
    missing = [f for f in OBJECTNET_MAPPINGS if not (mappings / f).is_file()]
    if missing:
        hint = "; point data.root at its parent" if root.name in ("images", "mappings") else ""
        raise DatasetError(f"data.root={root}: ObjectNet mapping file(s) {', '.join(missing)} not in {mappings}; "
                           f"expected the objectnet-1.0 folder with images/<folder>/*.png and mappings/ "
                           f"(found {_found(root)}){hint}")
    return mappings


def _read_json(path: Path, value_type: type) -> dict:
    """A JSON object of str -> ``value_type``, or one error naming the file and what it should hold."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not readable JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(v, value_type) for v in data.values()):
        raise DatasetError(f"{path}: expected a JSON object of string -> {value_type.__name__}")
    return data


def _imagenet_names(mappings: Path) -> dict[str, list[int]]:
    """ImageNet name (a line of imagenet_to_label_2012_v2) -> global indices, via pytorch_to_imagenet_2012_id.json
    (torchvision index -> line number). A list, since a few names (e.g. "crane") name two classes."""
    try:
        lines = (mappings / OBJECTNET_MAPPINGS[3]).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{mappings / OBJECTNET_MAPPINGS[3]}: not UTF-8 text (one ImageNet name a line)") from None
    by_name: dict[str, list[int]] = defaultdict(list)
    for index, line in _read_json(mappings / OBJECTNET_MAPPINGS[2], int).items():
        if not (CLASS_INDEX.fullmatch(index) and 0 <= line < len(lines)):
            raise DatasetError(f"{mappings / OBJECTNET_MAPPINGS[2]}: entry {index!r}: {line} is expected to be a "
                               f"torchvision class index 0-999 -> a line number of {OBJECTNET_MAPPINGS[3]}")
        by_name[lines[line].strip()].append(int(index))
    return by_name


def objectnet_classes(root: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(folder -> ObjectNet label for all 313 classes, folder -> global indices for the 113 that overlap ImageNet)."""
    mappings = _mapping_dir(root)
    folder_label = _read_json(mappings / OBJECTNET_MAPPINGS[0], str)
    label_names = _read_json(mappings / OBJECTNET_MAPPINGS[1], str)
    by_name = _imagenet_names(mappings)
    folder_of = {label: folder for folder, label in folder_label.items()}
    overlap = {}
    for label, names in label_names.items():
        where = f"{mappings / OBJECTNET_MAPPINGS[1]}: {label!r}"
        if label not in folder_of:
            raise DatasetError(f"{where} is no label of {OBJECTNET_MAPPINGS[0]}")
        indices = []
        for name in (n.strip() for n in names.split("; ")):
            if len(by_name.get(name, ())) != 1:
                problem = "names two ImageNet classes" if by_name.get(name) else "is no line of"
                raise DatasetError(f"{where} maps to {name!r}, which {problem} {OBJECTNET_MAPPINGS[3]}")
            indices.append(by_name[name][0])
        if len(indices) > 1 + MAX_ALT_LABELS:
            raise DatasetError(f"{where} maps to {len(indices)} ImageNet classes; the loader accepts at most "
                               f"{1 + MAX_ALT_LABELS} per image (raise MAX_ALT_LABELS in data/loader.py)")
        overlap[folder_of[label]] = tuple(indices)
    return folder_label, overlap


@register_dataset("objectnet")
def objectnet(root, **_) -> ImageList:
    """ObjectNet 1.0: ``root/images/<folder>/*.png`` and the label maps in ``root/mappings/``. Only the classes that
    overlap ImageNet are scored; a prediction of any ImageNet class mapped to the true class counts as correct.
    The thin red frame is cut off in decoding (OBJECTNET_BORDER pixels a side)."""
    layout = "root/images/<objectnet folder>/*.png"
    root = _existing_dir(root)
    folder_label, overlap = objectnet_classes(root)
    if not (root / "images").is_dir():
        raise DatasetError(f"data.root={root}: no images/ folder; expected {layout} (found {_found(root)})")
    dirs = _class_dirs(root / "images", layout)
    unknown = [d.name for d in dirs if d.name not in folder_label]
    if unknown or not dirs:
        what = f"folder(s) {_names(unknown)} are not in {OBJECTNET_MAPPINGS[0]}" if unknown else "no folders"
        raise DatasetError(f"data.root={root}/images: {what}; expected {layout} "
                           f"(found {_found(root / 'images')})")
    scored = [d for d in dirs if d.name in overlap]
    if not scored:
        raise DatasetError(f"data.root={root}/images: none of its {len(dirs)} folders is one of the "
                           f"{len(overlap)} ObjectNet classes that overlap ImageNet ({OBJECTNET_MAPPINGS[1]})")
    left_out = sum(1 for d in dirs if d.name not in overlap for f in d.iterdir() if _is_image(f))
    items = _items(root / "images", scored, overlap, layout)
    notes = [f"{left_out} images of {len(dirs) - len(scored)} ObjectNet classes without an ImageNet counterpart "
             "were left out"] if left_out else []
    return ImageList(name="objectnet", items=items, root=str(root), notes=notes, protocol="subset",
                     class_subset=tuple(sorted({i for ids in overlap.values() for i in ids})),
                     border_crop=OBJECTNET_BORDER)
