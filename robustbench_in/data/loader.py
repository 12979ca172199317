"""One loader for every dataset: decode each image once, convert it to RGB, apply the model's geometry, yield uint8.

An unreadable or truncated image becomes a skip record (path, reason) that the engine counts and reports —
never a crash, never a garbage score.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from robustbench_in.data.datasets import ImageItem, ImageList
from robustbench_in.data.preprocessing import Preprocessing

MAX_ALT_LABELS = 4


#: What PIL raises for a file that is not a readable image (truncated, empty, foreign, decompression bomb).
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
#: sample key -> batch key of the integer fields that :func:`collate` stacks
BATCH_KEYS = {"label": "labels", "alt_labels": "alt_labels", "image_id": "image_ids", "index": "index"}


def open_rgb(path) -> Image.Image:
    """The whole image decoded now (so a truncated file fails here) and converted to RGB (grayscale, CMYK,
    palette)."""
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def skip_record(item: ImageItem, err: BaseException) -> dict:
    return {"skipped": (str(item.path), str(err).split("\n")[0] or type(err).__name__)}


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
            crop = self.preprocessing.geometry(open_rgb(item.path))
        except UNREADABLE as err:
            return skip_record(item, err)
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
        for key, name in BATCH_KEYS.items():
            if key in good[0]:
                batch[name] = torch.tensor([s[key] for s in good], dtype=torch.int64)
    return batch


def make_loader(images: ImageList, preprocessing: Preprocessing, batch_size: int, workers: int,
                indices: list[int] | None = None, pin_memory: bool = False) -> DataLoader:
    """Batches of uint8 crops in dataset order (optionally a subset of indices, e.g. one shard)."""
    dataset: Dataset = ImageDataset(images, preprocessing)
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False)
