"""Corrupted images already on disk: the released ImageNet-C tree (and ImageNet-C-bar, 3DCC, our own exports).

Layout ``root/<corruption>/<severity>/<wnid>/<file>``. Each (corruption, severity) folder is one cell, evaluated
as it is: no second corruption and no resize or crop (the released files are already the 224 x 224 centre crop;
resizing them again is the trap that reordered a public leaderboard). Their clean counterpart is the original
val folder (``data.clean_root``) under the standard val transform.

Image keys are ``<wnid>/<file>``, as in ``imagenet_folder``, so a file cell pairs image by image with the clean
cell (and with on-the-fly cells of the same val images) in the report's paired tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import (
    DatasetError, ImageItem, ImageList, _existing_dir, _hidden, _is_image, imagenet_folder, register_dataset,
)

EXPECTED = "expected root/<corruption>/<severity 1-5>/<wnid>/*.JPEG (the released ImageNet-C layout)"


def _folders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not _hidden(p))


def _stray_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if _is_image(p))


def _listing(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _severity_folders(corruption_dir: Path, root: Path) -> dict[int, Path]:
    """severity -> folder of one corruption; anything else in it is a one-line error listing what was found."""
    found = _folders(corruption_dir)
    bad = [p.name for p in found if not (p.name.isdigit() and 1 <= int(p.name) <= 5)]
    stray = _stray_files(corruption_dir)
    if bad or stray or not found:
        what = _listing(bad + stray) if bad or stray else "nothing"
        raise DatasetError(f"data.root={root}: {corruption_dir.name}/ holds {what}; {EXPECTED}")
    return {int(p.name): p for p in found}


def _cell_items(folder: Path, root: Path) -> list[ImageItem]:
    """The images of one (corruption, severity) folder, labelled by their wnid folder."""
    index = imagenet_classes().index_of
    wnid_dirs = _folders(folder)
    unknown = [d.name for d in wnid_dirs if d.name not in index]
    stray = _stray_files(folder)
    where = folder.relative_to(root)
    if unknown or stray:
        what = (f"folder(s) that are not ImageNet wnids: {_listing(unknown)}" if unknown
                else f"files at the wrong depth: {_listing(stray)}")
        raise DatasetError(f"data.root={root}: {where}/ holds {what}; {EXPECTED}")
    items = []
    for d in wnid_dirs:
        with os.scandir(d) as entries:
            names = sorted(e.name for e in entries if e.is_file() and _is_image(Path(e.path)))
        items += [ImageItem(path=d / n, label=index[d.name], key=f"{d.name}/{n}") for n in names]
    if not items:
        raise DatasetError(f"data.root={root}: {where}/ holds no images; {EXPECTED}")
    return items


def read_tree(root: Path) -> dict[tuple[str, int], list[ImageItem]]:
    """(corruption, severity) -> images, for every folder of the tree; every corruption must have the same
    severities (a missing severity folder is an error naming it)."""
    corruption_dirs = _folders(root)
    stray = _stray_files(root)
    if stray or not corruption_dirs:
        what = f"files at the wrong depth: {_listing(stray)}" if stray else "no corruption folders"
        raise DatasetError(f"data.root={root} holds {what}; {EXPECTED}")
    index = imagenet_classes().index_of
    if any(d.name in index for d in corruption_dirs):
        raise DatasetError(f"data.root={root} holds wnid folders: it is a val folder, not an ImageNet-C tree; "
                           f"{EXPECTED} (use data=imagenet_folder for clean images)")
    severities = {d.name: _severity_folders(d, root) for d in corruption_dirs}
    union = sorted(set().union(*(set(s) for s in severities.values())))
    missing = [f"{name}/{s}" for name, found in severities.items() for s in union if s not in found]
    if missing:
        raise DatasetError(f"data.root={root}: severity folder(s) missing: {_listing(missing)} (the tree has "
                           f"severities {', '.join(map(str, union))}); {EXPECTED}")
    return {(name, s): _cell_items(folder, root) for name, found in severities.items() for s, folder in found.items()}


@register_dataset("imagenet_c_folder")
def imagenet_c_folder(root, clean_root=None, **_) -> ImageList:
    """The released ImageNet-C tree (or any tree of that layout): one file cell per (corruption, severity)
    folder in ``ImageList.tree``; the list's own items are the clean val images of ``data.clean_root`` (none
    without it)."""
    root = _existing_dir(root)
    tree = {cell: ImageList(name="imagenet_c_folder", items=items, root=str(root / cell[0] / str(cell[1])))
            for cell, items in read_tree(root).items()}
    clean = imagenet_folder(root=clean_root, key="data.clean_root") if clean_root else None
    notes = [] if clean else ["data.clean_root is not set: no clean cell (give the val folder the tree was made "
                              "from to get the clean error and the degradation)"]
    return ImageList(name="imagenet_c_folder", items=clean.items if clean else [], root=str(root), notes=notes,
                     tree=tree)
