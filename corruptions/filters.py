"""Filter building blocks shared by the blur and weather corruptions (ImageNet-C spec §2.1, §2.3, §2.5).

Each op reproduces the semantics of the library the reference generator called (scipy/scikit-image Gaussian,
scipy ``zoom`` inside ``clipped_zoom``, ImageMagick's motion blur) as batched torch code: (N, C, H, W) tensors,
any C, any device, no loop over images. Border handling is done by gathering with folded/clamped indices rather
than ``F.pad``, because scipy's half-sample ``reflect`` is not torch's mirror type and kernels may be longer
than the image (elastic_transform, spec §3.13).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BORDER_MODES = ("nearest", "reflect", "reflect101")


def border_indices(size: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source indices for positions -before .. size+after-1 of a 1-D signal extended past its ends.

    ``nearest`` = edge replicate (scipy ``nearest``); ``reflect`` = half-sample symmetric ``d c b a | a b c d``
    (scipy ``reflect``), periodic with period 2*size, so any extension length works; ``reflect101`` = whole-sample
    symmetric ``d c b | a b c d`` (OpenCV BORDER_REFLECT_101), periodic with period 2*size-2.
    """
    pos = torch.arange(-before, size + after, device=device)
    if mode == "nearest" or size == 1:
        return pos.clamp(0, size - 1)
    if mode == "reflect":
        period = 2 * size
        pos = torch.remainder(pos, period)
        return torch.where(pos >= size, period - 1 - pos, pos)
    if mode == "reflect101":
        period = 2 * size - 2
        pos = torch.remainder(pos, period)
        return torch.where(pos >= size, period - pos, pos)
    raise ValueError(f"unknown border mode {mode!r}; expected one of {BORDER_MODES}")


def pad_images(images: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Extend (..., H, W) by the given amounts with a scipy/OpenCV border mode (see :func:`border_indices`)."""
    h, w = images.shape[-2:]
    rows = border_indices(h, top, bottom, mode, images.device)
    cols = border_indices(w, left, right, mode, images.device)
    return images.index_select(-2, rows).index_select(-1, cols)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """scipy's 1-D Gaussian: exp(-t²/2σ²) for t in [-r, r], r = int(truncate·σ + 0.5), normalised (spec §2.1)."""
    radius = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 / (float(sigma) ** 2) * t * t)
    return (weights / weights.sum()).to(dtype=dtype, device=device)


_MAX_TAPS_SHIFTED = 64  # longer kernels (e.g. elastic's 1025 taps) go through a dense per-axis matrix


def _correlate_axis(images: torch.Tensor, weights: torch.Tensor, axis: int, mode: str) -> torch.Tensor:
    """1-D correlation of (..., H, W) along H (axis=-2) or W (axis=-1) with a centred odd-length kernel.

    Short kernels: sum of shifted slices of the border-extended signal (much faster on CPU than a 1-channel
    conv2d). Long kernels: a (size x size) matrix holding the folded weights, so any kernel length and border
    mode cost one matmul.
    """
    radius = (weights.numel() - 1) // 2
    size = images.shape[axis]
    idx = border_indices(size, radius, radius, mode, images.device)
    if weights.numel() > _MAX_TAPS_SHIFTED:
        rows = torch.arange(size, device=images.device).view(-1, 1).expand(size, weights.numel())
        cols = idx.unfold(0, weights.numel(), 1)  # (size, taps): source index of tap t for output o
        matrix = torch.zeros(size, size, dtype=images.dtype, device=images.device)
        values = weights.to(dtype=images.dtype, device=images.device).repeat(size)
        matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), values, accumulate=True)
        return torch.matmul(matrix, images) if axis == -2 else torch.matmul(images, matrix.T)
    padded = images.index_select(axis, idx)
    out = None
    for t, k in enumerate(weights.tolist()):
        tap = padded.narrow(axis, t, size)
        out = tap * k if out is None else out.add_(tap, alpha=k)
    return out


def gaussian_filter(images: torch.Tensor, sigma: float, truncate: float = 4.0, mode: str = "nearest") -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with scipy.ndimage.gaussian_filter semantics (spec §2.1).

    Each spatial axis gets the truncated 1-D kernel of :func:`gaussian_kernel1d`; channels are not mixed (the
    scikit-image ``channel_axis`` behaviour). ``mode`` is ``"nearest"`` (scikit-image default) or ``"reflect"``
    (half-sample symmetric, periodic for kernels longer than the image, as elastic_transform needs; ``"reflect101"``
    is also accepted). Computes in the input's dtype (float64 gives scipy's numbers to ~1e-15). Returns new memory.
    """
    if not images.is_floating_point():
        raise TypeError(f"gaussian_filter needs a float tensor, got {images.dtype}")
    if mode not in BORDER_MODES:
        raise ValueError(f"mode must be one of {BORDER_MODES}, got {mode!r}")
    if float(sigma) <= 0:
        return images.clone()
    weights = gaussian_kernel1d(sigma, truncate)  # float64 on CPU: taps are read as Python floats, no device sync
    out = _correlate_axis(images, weights, -2, mode)  # scipy filters axis 0 (rows) first
    return _correlate_axis(out, weights, -1, mode)


def zoom_geometry(size: int, factor: float) -> tuple[int, int, int, int]:
    """(crop length, crop start, zoomed length, trim) of clipped_zoom along one axis (spec §2.3).

    ch = ceil(size / z) and out = round(ch · z) with Python float arithmetic and rounding, exactly as the
    reference (numpy ceil, scipy's output-shape rule), so e.g. 224 / 1.12 lands on the same side of 200.
    """
    crop = int(math.ceil(size / float(factor)))
    start = (size - crop) // 2
    out = int(round(crop * float(factor)))
    return crop, start, out, (out - size) // 2


def clipped_zoom(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre of (N, C, H, W) by ``factor`` >= 1, keeping the size (spec §2.3, trap 6).

    Centre crop of ceil(size / z) per axis, corner-aligned bilinear resize to round(crop · z) (scipy
    ``zoom(order=1)`` = ``align_corners=True``), then the trim (out - size) // 2, which is 0 whenever out exceeds
    size by one, i.e. the top-left window: the reference's half-pixel asymmetry is kept on purpose. Each axis
    uses its own geometry, so non-square and non-224 images work.
    """
    if float(factor) < 1.0:
        raise ValueError(f"clipped_zoom needs factor >= 1, got {factor}")
    h, w = images.shape[-2:]
    ch, top, out_h, trim_h = zoom_geometry(h, factor)
    cw, left, out_w, trim_w = zoom_geometry(w, factor)
    crop = images[..., top:top + ch, left:left + cw]
    if (out_h, out_w) == (ch, cw):  # factor 1: scipy's zoom samples the grid points exactly
        return crop.clone(memory_format=torch.contiguous_format)
    zoomed = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    return zoomed[..., trim_h:trim_h + h, trim_w:trim_w + w].contiguous()


def motion_blur_kernel(radius: float, sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """ImageMagick's one-sided motion weights (spec §2.5): exp(-i²/2σ²), i = 0 .. 2·ceil(radius), normalised."""
    width = 2 * int(math.ceil(radius)) + 1
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i * i) / (2.0 * float(sigma) ** 2))
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def motion_blur_offsets(width: int, angles_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image integer tap offsets (dx, dy), each (N, width), ImageMagick's rounding (spec §2.5 step 3).

    dx_i = ceil(i·cos θ - 0.5), dy_i = ceil(i·sin θ - 0.5) with x to the right and y downward; computed in
    float64 through ImageMagick's (width·sin, width·cos)/hypot form so boundary cases round the same way.
    """
    theta = math.pi * angles_deg.to(torch.float64).view(-1, 1) / 180.0
    px, py = width * torch.sin(theta), width * torch.cos(theta)
    hyp = torch.hypot(px, py)
    i = torch.arange(width, dtype=torch.float64, device=angles_deg.device).view(1, -1)
    dx = torch.ceil(i * py / hyp - 0.5).to(torch.int64)
    dy = torch.ceil(i * px / hyp - 0.5).to(torch.int64)
    return dx, dy


def quantize_imagemagick(acc255: torch.Tensor) -> torch.Tensor:
    """8-bit result of ImageMagick Q16 + 8-bit PNG writer: floor(round_half_up(257·acc) / 257) (spec §2.5 step 5)."""
    return torch.floor(torch.floor(257.0 * acc255 + 0.5) / 257.0)


def motion_blur(images: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor,
                quantize: bool = False) -> torch.Tensor:
    """ImageMagick ``MotionBlurImage`` on (N, C, H, W) values in [0, 1] with one angle per image (spec §2.5).

    Output(y, x) = Σ_i k_i · In(clamp(y + dy_i), clamp(x + dx_i)): a one-sided Gaussian streak along
    (cos θ, sin θ), edge replicate, per channel. Batched: the image is edge-padded once and every tap is one
    gather with a per-image linear offset (loop over the ≤ 41 taps only). With ``quantize=True`` the input is read
    as 8-bit (round(255·x), the reference's PNG round trip) and the result is ImageMagick's 8-bit value / 255;
    otherwise the float result in the input dtype. The quantised path gathers in the input dtype (8-bit values
    are exact in float32) but accumulates in float64, so the step-5 rounding boundaries fall as in ImageMagick's
    double arithmetic (float32 sums flip ~1e-4 of the values by one level).
    """
    if not images.is_floating_point():
        raise TypeError(f"motion_blur needs a float tensor, got {images.dtype}")
    n, c, h, w = images.shape
    angles_deg = torch.as_tensor(angles_deg, device=images.device).reshape(-1)
    if angles_deg.shape[0] != n:
        raise ValueError(f"need one angle per image: {n} images, {angles_deg.shape[0]} angles")
    weights = motion_blur_kernel(radius, sigma)
    width = weights.numel()
    dx, dy = motion_blur_offsets(width, angles_deg)
    reach = width - 1
    src = torch.round(images * 255.0) if quantize else images
    padded = pad_images(src, reach, reach, reach, reach, "nearest")
    wp = w + 2 * reach
    flat = padded.reshape(n, c, -1)
    base = (torch.arange(h, device=images.device).view(h, 1) * wp
            + torch.arange(w, device=images.device).view(1, w)).view(1, 1, h * w)
    shift = (dy + reach) * wp + (dx + reach)  # (N, width) linear offset of each tap into the padded image
    acc = torch.zeros(n, c, h * w, dtype=torch.float64 if quantize else images.dtype, device=images.device)
    for i, k in enumerate(weights.tolist()):
        index = (base + shift[:, i].view(n, 1, 1)).expand(n, c, h * w)
        acc.add_(torch.gather(flat, 2, index), alpha=k)
    acc = acc.view(n, c, h, w)
    if quantize:
        return (quantize_imagemagick(acc) / 255.0).to(images.dtype)
    return acc
