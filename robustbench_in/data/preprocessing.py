"""What a model expects of its input: geometry (resize, crop, interpolation) and normalisation.

Geometry is applied once on decode (CPU, PIL — the same resampler the ImageNet-C reference used); the
corruptions run on the cropped uint8->float image; normalisation happens last, on the device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize_size``, center-crop ``input_size``, normalise with mean/std."""

    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} unknown; use one of {', '.join(INTERPOLATIONS)}")
        if not 0 < self.input_size <= self.resize_size:
            raise ValueError(f"need 0 < input_size ({self.input_size}) <= resize_size ({self.resize_size})")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def describe(self) -> str:
        """Compact, human-readable record for result rows."""
        m = ",".join(f"{v:.4g}" for v in self.mean)
        s = ",".join(f"{v:.4g}" for v in self.std)
        return (f"resize{self.resize_size}-center{self.input_size}-{self.interpolation}"
                f"-mean({m})-std({s})")

    def as_dict(self) -> dict:
        return asdict(self)

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

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (N, 3, H, W) on any device -> model input."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std
