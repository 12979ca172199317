"""Blur corruptions of ImageNet-C (spec §3.4-3.7, §4.2): defocus, glass, motion, zoom and Gaussian blur.

At 224x224 every parameter is the reference's. At other sizes the spatial parameters scale with
s = min(H, W) / 224 (blur radii and sigmas, the glass-blur displacement), so a severity blurs the same fraction
of the image at any resolution; zoom blur's factors are relative already and its crop geometry follows the
actual size. Randomness (glass-blur offsets, motion angle) comes from ``corruptions.rng`` keyed by each image's
seed: same distributions as the reference, not numpy's MT19937 stream.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions import rng
from corruptions.filters import border_indices, clipped_zoom, gaussian_filter, motion_blur as _motion_blur
from corruptions.registry import register_corruption

DEFOCUS = {1: (3, 0.1), 2: (4, 0.5), 3: (6, 0.5), 4: (8, 0.5), 5: (10, 0.5)}  # §3.4: (disk radius, alias sigma)
GLASS = {1: (0.7, 1, 2), 2: (0.9, 2, 1), 3: (1.0, 2, 3), 4: (1.1, 3, 2), 5: (1.5, 4, 2)}  # §3.5: (sigma, delta, iters)
MOTION = {1: (10, 3), 2: (15, 5), 3: (15, 8), 4: (15, 12), 5: (20, 15)}  # §3.6: (radius, sigma)
ZOOM = {1: (1.0, 1.11, 0.01), 2: (1.0, 1.16, 0.01), 3: (1.0, 1.21, 0.02), 4: (1.0, 1.26, 0.02),
        5: (1.0, 1.31, 0.03)}  # §3.7: numpy arange(start, stop, step)
GAUSSIAN_SIGMA = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6}  # §4.2

_MOTION_ANGLE_RANGE = (-45.0, 45.0)  # §3.6, degrees, positive = clockwise in image coordinates


def _work_dtype(images: torch.Tensor) -> torch.dtype:
    """At least float32 for the arithmetic (half-precision inputs would band the blur)."""
    return torch.promote_types(images.dtype, torch.float32)


def size_scale(images: torch.Tensor) -> float:
    """s = min(H, W) / 224: the factor applied to the reference's spatial parameters."""
    return min(images.shape[-2:]) / 224.0


# ---------------------------------------------------------------- defocus_blur


def _opencv_gaussian_1d(ksize: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma, CV_32F): float64 exp, rounded to float32, renormalised (spec §2.2)."""
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) * 0.5
    taps = torch.exp((-0.5 / (sigma * sigma)) * x * x).to(torch.float32)
    return (taps.to(torch.float64) * (1.0 / taps.to(torch.float64).sum())).to(torch.float32)


def _opencv_symmetric_filter(array: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable float32 filtering of a 2-D array like cv2.sepFilter2D with a symmetric kernel, reflect-101.

    Rows first, then columns, each as k0·x + Σ_j k_j·(x[-j] + x[+j]) in float32 with fused multiply-adds
    (emulated in float64), OpenCV's symmetric small-kernel form. Agrees with OpenCV to a float32 ulp (≤ 2e-9 per
    entry; most entries bit-equal, OpenCV's SIMD tails round a few differently); the kernel sums of spec §2.2
    (1.01297545 / 1.01078582 at s4 / s5) are reproduced.
    """
    half = (kernel.numel() - 1) // 2
    k = kernel.to(torch.float64).tolist()  # float32 values, exactly representable
    for dim in (1, 0):
        size = array.shape[dim]
        padded = array.index_select(dim, border_indices(size, half, half, "reflect101"))
        out = padded.narrow(dim, half, size) * k[half]
        for j in range(1, half + 1):
            pair = padded.narrow(dim, half - j, size) + padded.narrow(dim, half + j, size)  # float32 add
            out = (out.to(torch.float64) + pair.to(torch.float64) * k[half + j]).to(torch.float32)  # one rounding
        array = out
    return array


def disk_kernel(radius: float, alias_sigma: float, scale: float = 1.0) -> torch.Tensor:
    """The defocus kernel of spec §2.2, rebuilt without OpenCV: float32 (2L+1)² array.

    Binary disk X² + Y² <= r² on the grid -L..L (L = 8 for r <= 8, else r), divided by its pixel count, then
    anti-aliased with OpenCV's Gaussian (3x3 for r <= 8, else 5x5) under reflect-101 and *not* renormalised,
    so the s4/s5 kernels keep their > 1 sums. ``scale`` multiplies r, the alias sigma, L and the AA half-width
    (rounded), for images other than 224x224; scale 1 is the reference exactly.
    """
    r = radius * scale
    if radius <= 8:
        half, aa_half = max(round(8 * scale), math.ceil(r)), max(1, round(scale))
    else:
        half, aa_half = math.ceil(r), max(1, round(2 * scale))
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    inside = (grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2 <= r * r).to(torch.float32)
    aliased = inside / inside.sum()
    return _opencv_symmetric_filter(aliased, _opencv_gaussian_1d(2 * aa_half + 1, alias_sigma * scale))


def filter2d_reflect101(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D per channel (correlation, centred anchor, BORDER_REFLECT_101) of (N, C, H, W)."""
    n, c, h, w = images.shape
    kh, kw = kernel.shape
    rows = border_indices(h, kh // 2, kh // 2, "reflect101", images.device)
    cols = border_indices(w, kw // 2, kw // 2, "reflect101", images.device)
    padded = images.index_select(-2, rows).index_select(-1, cols)
    weight = kernel.to(dtype=images.dtype, device=images.device).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


@register_corruption("defocus_blur", category="blur", random=False,
                     params={s: {"radius": r, "alias_sigma": a} for s, (r, a) in DEFOCUS.items()})
def defocus_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Out-of-focus blur: correlation with an anti-aliased disk, reflect-101 border (spec §3.4, trap 7).

    The exact OpenCV-built kernel, including the 1.3 % / 1.1 % brightening at s4/s5. Size scaling: disk radius,
    alias sigma and grid grow with s = min(H, W) / 224 (see :func:`disk_kernel`).
    """
    radius, alias_sigma = DEFOCUS[severity]
    kernel = disk_kernel(radius, alias_sigma, size_scale(images))
    return filter2d_reflect101(images.to(_work_dtype(images)), kernel).clamp_(0.0, 1.0).to(images.dtype)


# ---------------------------------------------------------------- glass_blur


def glass_offsets(seeds: torch.Tensor, height: int, width: int, delta: int, iterations: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (dx, dy) of every visited pixel and iteration: ints in [-δ, δ-1], each (N, iters, H-2δ, W-2δ).

    The reference draws ``randint(-δ, δ, 2)``: the upper bound is exclusive, hence the asymmetry (spec §3.5).
    Element [k, i, j] belongs to pixel (δ+1+i, δ+1+j) (row, column) in iteration k.
    """
    shape = (iterations, height - 2 * delta, width - 2 * delta)
    dx = rng.randint(seeds, -delta, delta, shape, stream=1)
    dy = rng.randint(seeds, -delta, delta, shape, stream=2)
    return dx, dy


def glass_shuffle(pixels: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, delta: int) -> torch.Tensor:
    """The reference's sequential "swap" loop (spec §3.5 steps 2-3) as exact parallel tensor ops.

    Reference: for h from H-δ down to δ+1, for w from W-δ down to δ+1: ``x[h,w], x[h',w'] = x[h',w'], x[h,w]``
    on numpy row views, which copies pixel q = (h+dy, w+dx) into p = (h, w) and leaves q unchanged. Each pixel
    is written only at its own visit, so p ends with final(q) if q was visited earlier in the scan (q in the
    visited square and q after p in row-major order), else with q's value at the start of the iteration.
    Those chains are resolved by pointer jumping (log2 of the longest chain rounds, a few in practice), then one
    gather. Iterations are applied in sequence. Identical results to the loop (tests/test_corruptions_blur.py).
    """
    n, c, h, w = pixels.shape
    device = pixels.device
    flat_index = torch.arange(h * w, device=device).view(h, w)
    rows = torch.arange(delta + 1, h - delta + 1, device=device).view(-1, 1)
    cols = torch.arange(delta + 1, w - delta + 1, device=device).view(1, -1)
    visited = torch.zeros(h, w, dtype=torch.bool, device=device)
    visited[delta + 1:h - delta + 1, delta + 1:w - delta + 1] = True
    visited_flat = visited.view(-1)
    targets = flat_index[delta + 1:h - delta + 1, delta + 1:w - delta + 1].reshape(-1)
    out = pixels.reshape(n, c, h * w)
    for k in range(dx.shape[1]):
        source = ((rows + dy[:, k]) * w + (cols + dx[:, k])).reshape(n, -1)  # q for every visited p
        pointer = flat_index.view(1, -1).repeat(n, 1)  # unvisited pixels point at themselves (resolved)
        pointer[:, targets] = source
        resolved = ~(visited_flat[pointer] & (pointer > flat_index.view(1, -1)))
        for _ in range(max(1, math.ceil(math.log2(h * w))) + 1):
            if bool(resolved.all()):
                break
            hop, hop_resolved = pointer.gather(1, pointer), resolved.gather(1, pointer)
            pointer = torch.where(resolved, pointer, hop)
            resolved = resolved | hop_resolved
        out = out.gather(2, pointer.unsqueeze(1).expand(n, c, h * w))
    return out.view(n, c, h, w)


@register_corruption("glass_blur", category="blur", random=True,
                     params={s: {"sigma": a, "delta": d, "iterations": i} for s, (a, d, i) in GLASS.items()})
def glass_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Frosted glass: Gaussian blur, 8-bit truncation, local pixel scrambling, Gaussian blur (spec §3.5, trap 8).

    Same algorithm as the reference, in parallel: the first blur runs in float64 and is truncated to 8 bit like
    ``np.uint8(255·g)``; the scrambling reproduces the reference loop's copy (not swap) semantics, bottom-right
    to top-left scan and offsets in [-δ, δ-1] exactly (:func:`glass_shuffle`); only the random offsets come from
    ``corruptions.rng`` instead of numpy's global MT19937, so outputs agree in distribution, not pixel-for-pixel.
    Size scaling: sigma·s and δ = max(1, round(δ·s)), s = min(H, W) / 224; iterations unchanged.
    """
    sigma, delta, iterations = GLASS[severity]
    scale = size_scale(images)
    sigma, delta = sigma * scale, max(1, round(delta * scale))
    n, _, h, w = images.shape
    if min(h, w) <= 2 * delta + 1:
        raise ValueError(f"glass_blur needs images larger than {2 * delta + 1} px, got {h}x{w}")
    first = gaussian_filter(images.to(torch.float64), sigma)
    pixels8 = torch.floor(first.clamp_(0.0, 1.0) * 255.0).to(_work_dtype(images))
    dx, dy = glass_offsets(seeds.to(images.device), h, w, delta, iterations)
    scrambled = glass_shuffle(pixels8, dx, dy, delta)
    return gaussian_filter(scrambled / 255.0, sigma).clamp_(0.0, 1.0).to(images.dtype)


# ---------------------------------------------------------------- motion_blur


@register_corruption("motion_blur", category="blur", random=True,
                     params={s: {"radius": r, "sigma": g, "angle": _MOTION_ANGLE_RANGE}
                             for s, (r, g) in MOTION.items()})
def motion_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Camera shake: ImageMagick's one-sided Gaussian motion blur at a random angle U(-45°, 45°) (spec §3.6, §2.5).

    One angle per image from its seed; the output is ImageMagick's 8-bit result (step-5 quantisation) / 255, as
    the reference returns uint8. Size scaling: radius·s and sigma·s, s = min(H, W) / 224.
    """
    radius, sigma = MOTION[severity]
    scale = size_scale(images)
    low, high = _MOTION_ANGLE_RANGE
    angles = low + (high - low) * rng.uniform(seeds.to(images.device), (1,), stream=0, dtype=torch.float64).view(-1)
    work = images.to(_work_dtype(images))
    return _motion_blur(work, radius * scale, sigma * scale, angles, quantize=True).to(images.dtype)


# ---------------------------------------------------------------- zoom_blur


def zoom_factors(severity: int) -> list[float]:
    """The float64 ``numpy.arange(start, stop, step)`` factor list of a severity (spec §3.7, trap 5).

    Computed as numpy does: length ceil((stop - start) / step), values start + k·((start + step) - start), so
    s1 has 12 factors (0.11 / 0.01 is slightly above 11), 1.00 is included and the last bits match (they decide
    ceil(224 / z) for e.g. 1.12).
    """
    start, stop, step = ZOOM[severity]
    count = math.ceil((stop - start) / step)
    delta = (start + step) - start
    return [start + k * delta for k in range(count)]


@register_corruption("zoom_blur", category="blur", random=False,
                     params={s: {"factors": tuple(round(z, 2) for z in zoom_factors(s))} for s in ZOOM})
def zoom_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Radial blur: the mean of the image and its centre zooms by each factor (spec §3.7).

    (x + Σ_z clipped_zoom(x, z)) / (len + 1) accumulated in float32 like the reference; 1.00 is in the list, so the
    unzoomed image counts twice. Size scaling: none needed, the factors are relative and clipped_zoom's crop
    geometry (ceil(size / z), top-left trim) follows the actual H and W.
    """
    work = images.to(torch.float32)
    factors = zoom_factors(severity)
    total = torch.zeros_like(work)
    for factor in factors:
        total += clipped_zoom(work, factor)
    return ((work + total) / (len(factors) + 1)).clamp_(0.0, 1.0).to(images.dtype)


# ---------------------------------------------------------------- gaussian_blur


@register_corruption("gaussian_blur", category="blur", random=False,
                     params={s: {"sigma": v} for s, v in GAUSSIAN_SIGMA.items()})
def gaussian_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """scikit-image Gaussian blur, edge-replicate border, truncate 4 (spec §4.2). Size scaling: sigma·s."""
    blurred = gaussian_filter(images.to(_work_dtype(images)), GAUSSIAN_SIGMA[severity] * size_scale(images))
    return blurred.clamp_(0.0, 1.0).to(images.dtype)
