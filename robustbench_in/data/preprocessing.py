"""What a model expects of its input: geometry (resize, crop, interpolation) and normalisation.

Geometry is applied once on decode (CPU, PIL — the same resampler the ImageNet-C reference used); the
corruptions run on the cropped uint8->float image; normalisation happens last, on the device.

One class serves twice: a model's full preprocessing (every field set) and the ``model.preprocessing``
config keys, where ``null`` keeps the model's own value (:meth:`Preprocessing.override`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Preprocessing:
    """Resize the shorter side to ``resize_size``, center-crop ``input_size``, normalise with mean/std.

    Not frozen, because Hydra overrides config nodes in place; treat instances as values (``override`` and
    ``dataclasses.replace`` return new ones)."""

    input_size: Optional[int] = None
    resize_size: Optional[int] = None
    interpolation: Optional[str] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None

    def __post_init__(self) -> None:
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"model.preprocessing.interpolation={self.interpolation!r} is unknown: use one of "
                             f"{', '.join(INTERPOLATIONS)}")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != 3 or (key == "std" and min(value) <= 0):
                    raise ValueError(f"model.preprocessing.{key} needs 3 values"
                                     + (" > 0" if key == "std" else "") + f", got {list(value)}")
                setattr(self, key, value)
        for key in ("input_size", "resize_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"model.preprocessing.{key} must be a positive integer, got {value!r}")
        if self.input_size is not None and self.resize_size is not None and self.input_size > self.resize_size:
            raise ValueError(f"model.preprocessing: input_size ({self.input_size}) must not exceed resize_size "
                             f"({self.resize_size})")

    @property
    def complete(self) -> bool:
        return all(getattr(self, f.name) is not None for f in fields(self))

    def override(self, other: Preprocessing | None) -> Preprocessing:
        """This preprocessing with every field that ``other`` sets replaced (checked as a whole)."""
        changes = {f.name: getattr(other, f.name) for f in fields(Preprocessing)} if other is not None else {}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self) -> str:
        """Compact, human-readable record for result rows."""
        m = ",".join(f"{v:.4g}" for v in self.mean)
        s = ",".join(f"{v:.4g}" for v in self.std)
        return (f"resize{self.resize_size}-center{self.input_size}-{self.interpolation}"
                f"-mean({m})-std({s})")

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def geometry(self, img: Image.Image) -> np.ndarray:
        """PIL RGB image -> uint8 (H, W, 3) crop, torchvision Resize(int)/CenterCrop semantics."""
        w, h = img.size
        if w <= h:
            nw, nh = self.resize_size, int(self.resize_size * h / w)
        else:
            nw, nh = int(self.resize_size * w / h), self.resize_size
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), INTERPOLATIONS[self.interpolation])
        top = int(round((nh - self.input_size) / 2.0))
        left = int(round((nw - self.input_size) / 2.0))
        img = img.crop((left, top, left + self.input_size, top + self.input_size))
        return np.asarray(img, dtype=np.uint8)

    @property
    def affine(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Normalisation as per-channel (scale, shift): (x - mean) / std = x * (1 / std) + (-mean / std)."""
        return tuple(1.0 / s for s in self.std), tuple(-m / s for m, s in zip(self.mean, self.std))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (N, 3, H, W) on any device -> model input, x * scale + shift (see :attr:`affine`;
        within 1 ulp of (x - mean) / std, one allocation instead of two, and the same bits as the JPEG step's fused
        normalisation, which a fused multiply-add would not give). Keeps the input's memory format."""
        scale, shift = (torch.tensor(v, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
                        for v in self.affine)
        return images.mul(scale).add_(shift)


#: The standard ImageNet evaluation transform: shorter side 256, center crop 224, bilinear, ImageNet mean/std.
STANDARD = Preprocessing(input_size=224, resize_size=256, interpolation="bilinear", mean=IMAGENET_MEAN,
                         std=IMAGENET_STD)
