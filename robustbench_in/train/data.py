"""Training data: a held-out split, the standard train-time crops, and an order that resumes exactly.

Every random choice is a pure function of (seed, epoch, image index): the epoch's order is a permutation drawn
from (seed, epoch), each image's crop and flip from (seed, epoch, index). So the batches do not depend on the
worker count, and a resumed run sees exactly the images an uninterrupted run would have seen. Under
DistributedDataParallel each rank takes every world-size-th image of the same permutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustbench_in.data.datasets import DataSpec, ImageList, build_dataset
from robustbench_in.data.loader import UNREADABLE, collate, decode, skip_record, worker_context
from robustbench_in.data.preprocessing import INTERPOLATIONS, Preprocessing


@dataclass
class Split:
    train: ImageList
    val: ImageList


def split_dataset(images: ImageList, val_fraction: float, val_spec: DataSpec | None) -> Split:
    """A separate val folder, or a deterministic held-out part of the training images (by image id, so adding
    or removing other images never moves an image between the parts)."""
    if val_spec is not None:
        return Split(images, build_dataset(val_spec))
    cut = int(round(val_fraction * 2**32))
    train = [i for i in images.items if i.image_id >= cut]
    val = [i for i in images.items if i.image_id < cut]
    if not train:
        raise ValueError(f"train.val_fraction={val_fraction} leaves no training images of {len(images.items)}")
    return Split(replace(images, items=train), replace(images, name=f"{images.name}-heldout", items=val))


def random_resized_crop_box(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float],
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, w, h) of torchvision's RandomResizedCrop, drawn from ``rng``: 10 tries at a random area and
    log-uniform aspect ratio, else the largest center crop within the ratio range."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


class TrainCrops(Dataset):
    """Decoded training images: random-resized crop to the model's input size and a random flip, as uint8.

    ``epoch`` is set before each epoch; the randomness of image ``i`` comes from (seed, epoch, i) alone."""

    def __init__(self, images: ImageList, preprocessing: Preprocessing, scale, hflip: bool, seed: int):
        self.images, self.pre, self.scale, self.hflip, self.seed = images, preprocessing, tuple(scale), hflip, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images.items)

    def __getitem__(self, index: int) -> dict:
        item = self.images.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            rgb = decode(item, self.images)
        except UNREADABLE as err:
            return skip_record(item, err)
        left, top, w, h = random_resized_crop_box(rng, rgb.width, rgb.height, self.scale)
        size = self.pre.input_size
        crop = rgb.resize((size, size), INTERPOLATIONS[self.pre.interpolation], box=(left, top, left + w, top + h))
        array = np.array(crop, dtype=np.uint8)
        if self.hflip and rng.random() < 0.5:
            array = np.ascontiguousarray(array[:, ::-1])
        return {"image": torch.from_numpy(array).permute(2, 0, 1), "label": item.label,
                "image_id": item.image_id}


def epoch_indices(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's images of the epoch, in order: a permutation of (seed, epoch), dealt round-robin to the
    ranks (padded by wrapping around so every rank takes the same number of steps)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    per_rank = math.ceil(n / world)
    order = (order * (1 + (per_rank * world) // max(1, n)))[: per_rank * world]
    return order[rank::world]


def steps_per_epoch(n_images: int, batch_size: int, world: int, cap: int | None) -> int:
    steps = math.ceil(math.ceil(n_images / world) / batch_size)
    return min(steps, cap) if cap else steps


def train_loader(dataset: TrainCrops, indices: list[int], batch_size: int, workers: int, pin: bool) -> DataLoader:
    """Batches of ``indices`` in order (the caller skips what a resumed run has already done)."""
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=collate, pin_memory=pin, drop_last=False,
                      multiprocessing_context=worker_context() if workers else None)
