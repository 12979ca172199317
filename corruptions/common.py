"""Facts every corruption module shares: the reference image size, size scaling and the working dtype.

Defined once here (not per module) so that a corruption cannot drift from the others in how it scales with the
image or in the precision it computes in.
"""

from __future__ import annotations

import torch

#: The side of the images ImageNet-C's parameters were written for (spec §1: 224x224 centre crops).
REFERENCE_SIZE = 224


def size_scale(images: torch.Tensor) -> float:
    """s = min(H, W) / 224: the factor applied to the reference's size-dependent parameters (blur radii and
    sigmas, displacements, block sizes) so that a severity looks the same at other resolutions."""
    return min(images.shape[-2:]) / REFERENCE_SIZE


def work_dtype(images: torch.Tensor) -> torch.dtype:
    """The dtype to compute in: at least float32 (float64 stays float64). Half-precision arithmetic would band
    blurs and linear shadows and quantise noise; float32 loses nothing a uint8 image can show."""
    return torch.promote_types(images.dtype, torch.float32)
