"""One loader for every dataset: decode each image once, convert it to RGB, apply the model's geometry, yield uint8.

An unreadable or truncated image becomes a skip record (path, reason) that the engine counts and reports —
never a crash, never a garbage score.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from robustbench_in.data.datasets import ImageItem, ImageList
from robustbench_in.data.preprocessing import Preprocessing

#: Further accepted labels per image. ObjectNet needs 2: Chair, Pen and Skirt each map to 3 ImageNet classes
#: (objectnet-1.0/mappings/objectnet_to_imagenet_1k.json); its builder refuses a mapping that needs more.
MAX_ALT_LABELS = 4


#: What PIL raises for a file that is not a readable image (truncated, empty, foreign, decompression bomb), plus
#: :class:`UnscoredImage` for one that decodes but whose pixels cannot be trusted.
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)
#: sample key -> batch key of the integer fields that :func:`collate` stacks
BATCH_KEYS = {"label": "labels", "alt_labels": "alt_labels", "image_id": "image_ids", "index": "index"}
#: The default cap on decoded pixels (``data.max_pixels``): 8000 x 8000, above any ImageNet photo; a file that
#: declares more is skipped before it is decoded (a 420 KB PNG can declare 12000^2 pixels, 2 GB once decoded).
MAX_PIXELS = 64_000_000
# PIL warns at open() above its own 89 M pixel limit; data.max_pixels decides here, so the warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
#: PIL's 16-bit grayscale modes: PIL's own convert("RGB") clips them at 255, which turns a photo white.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class UnscoredImage(ValueError):
    """An image that decodes, but whose pixels cannot be mapped to 0-255 without guessing: skipped, not scored."""


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grayscale -> 8-bit 'L', scaled by the format's full range (never clipped).

    16-bit values are divided by 257 (65535 -> 255). A 32-bit integer image is read as 16-bit only when the file
    says so (16-bit PNG, 16-bit TIFF); a float image only when its values lie in [0, 1]. Anything else is
    skipped with the reason, never scored as garbage."""
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise UnscoredImage("float image with values outside [0, 1] (unknown scale): convert it to 8-bit")
        return Image.fromarray(np.round(values * 255).astype(np.uint8), "L")
    values = np.asarray(img).astype(np.int64)
    bits = 16 if img.mode in SIXTEEN_BIT_MODES or img.format == "PNG" else _tiff_bits(img)
    if bits != 16 or values.min() < 0 or values.max() > 65535:
        raise UnscoredImage(f"{bits or 32}-bit integer image (unknown scale): convert it to 8 or 16 bits")
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def _tiff_bits(img: Image.Image) -> int | None:
    tags = getattr(img, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None  # BitsPerSample
    return int(bits[0] if isinstance(bits, tuple) else bits) if bits else None


def open_rgb(path, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """The whole image decoded now (so a truncated file fails here) and converted to 8-bit RGB: grayscale, CMYK,
    palette, alpha, and 16-bit or float grayscale scaled by its range. A file that declares more than
    ``max_pixels`` pixels is refused before decoding."""
    with Image.open(path) as img:
        if max_pixels and img.width * img.height > max_pixels:
            raise UnscoredImage(f"{img.width}x{img.height} pixels is more than data.max_pixels={max_pixels}; "
                                "raise data.max_pixels to read it")
        img.load()
        if img.mode in (*SIXTEEN_BIT_MODES, "I", "F"):
            img = _high_depth_to_l(img)
        return img.convert("RGB")


def crop_border(img: Image.Image, border: int) -> Image.Image:
    """Cut ``border`` pixels off every side (ObjectNet's red frame) before the model's resize and crop."""
    if border <= 0:
        return img
    if img.width <= 2 * border or img.height <= 2 * border:
        raise UnscoredImage(f"{img.width}x{img.height} pixels is too small to cut a {border}-pixel border off")
    return img.crop((border, border, img.width - border, img.height - border))


def decode(item: ImageItem, images: ImageList) -> Image.Image:
    """One image of a data set as 8-bit RGB, with the set's own decoding rules (pixel cap, border crop)."""
    return crop_border(open_rgb(item.path, images.max_pixels), images.border_crop)


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
            crop = self.preprocessing.geometry(decode(item, self.images))
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


def worker_context():
    """The start method for DataLoader workers: the interpreter's own, unless a launcher replaced it. Inside a
    joblib (loky) job the default context is loky's, whose processes torch cannot start; fork (spawn where fork
    does not exist) works there."""
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) in (None, "fork", "spawn", "forkserver"):
        return None
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def make_loader(images: ImageList, preprocessing: Preprocessing, batch_size: int, workers: int,
                indices: list[int] | None = None, pin_memory: bool = False) -> DataLoader:
    """Batches of uint8 crops in dataset order (optionally a subset of indices, e.g. one shard)."""
    dataset: Dataset = ImageDataset(images, preprocessing)
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=False,
                      multiprocessing_context=worker_context() if workers else None)
