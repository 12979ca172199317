"""Blur corruptions of ImageNet-C (spec §3.4-3.7, §4.2): defocus, glass, motion, zoom and Gaussian blur.

At 224x224 every parameter is the reference's. At other sizes the spatial parameters scale with
s = min(H, W) / 224 (blur radii and sigmas, the glass-blur displacement), so a severity blurs the same fraction
of the image at any resolution; zoom blur's factors are relative already and its crop geometry follows the
actual size. Randomness (glass-blur offsets, motion angle) comes from ``corruptions.rng`` keyed by each image's
seed: same distributions as the reference, not numpy's MT19937 stream.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from corruptions import cv, kernels, rng
from corruptions.common import size_scale, work_dtype
from corruptions.filters import (correlate2d_fft, gaussian_filter, gaussian_kernel1d, map_chunks,
                                 motion_blur as _motion_blur, zoom_geometry)
from corruptions.registry import register_corruption

DEFOCUS = {1: (3, 0.1), 2: (4, 0.5), 3: (6, 0.5), 4: (8, 0.5), 5: (10, 0.5)}  # §3.4: (disk radius, alias sigma)
GLASS = {1: (0.7, 1, 2), 2: (0.9, 2, 1), 3: (1.0, 2, 3), 4: (1.1, 3, 2), 5: (1.5, 4, 2)}  # §3.5: (sigma, delta, iters)
MOTION = {1: (10, 3), 2: (15, 5), 3: (15, 8), 4: (15, 12), 5: (20, 15)}  # §3.6: (radius, sigma)
ZOOM = {1: (1.0, 1.11, 0.01), 2: (1.0, 1.16, 0.01), 3: (1.0, 1.21, 0.02), 4: (1.0, 1.26, 0.02),
        5: (1.0, 1.31, 0.03)}  # §3.7: numpy arange(start, stop, step)
GAUSSIAN_SIGMA = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6}  # §4.2

_MOTION_ANGLE_RANGE = (-45.0, 45.0)  # §3.6, degrees, positive = clockwise in image coordinates


# ---------------------------------------------------------------- defocus_blur


def disk_kernel(radius: float, alias_sigma: float, scale: float = 1.0) -> torch.Tensor:
    """The defocus kernel of spec §2.2, rebuilt without OpenCV: float32 (2L+1)² array.

    Binary disk X² + Y² <= r² on the grid -L..L (L = 8 for r <= 8, else r), divided by its pixel count, then
    anti-aliased with OpenCV's Gaussian (3x3 for r <= 8, else 5x5; :mod:`corruptions.cv`) under reflect-101 and
    *not* renormalised, so the s4/s5 kernels keep their > 1 sums. ``scale`` multiplies r, the alias sigma, L and the
    AA half-width (rounded), for images other than 224x224; scale 1 is the reference exactly.
    """
    r = radius * scale
    if radius <= 8:
        half, aa_half = max(round(8 * scale), math.ceil(r)), max(1, round(scale))
    else:
        half, aa_half = math.ceil(r), max(1, round(2 * scale))
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    inside = (grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2 <= r * r).to(torch.float32)
    aliased = inside / inside.sum()
    return cv.sep_filter2d_symmetric(aliased, cv.gaussian_kernel(2 * aa_half + 1, alias_sigma * scale))


@functools.lru_cache(maxsize=32)
def _defocus_kernel(severity: int, scale: float) -> torch.Tensor:
    radius, alias_sigma = DEFOCUS[severity]
    return disk_kernel(radius, alias_sigma, scale)


@register_corruption("defocus_blur", category="blur", benchmark="imagenet_c", random=False,
                     params={s: {"radius": r, "alias_sigma": a} for s, (r, a) in DEFOCUS.items()})
def defocus_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Out-of-focus blur: correlation with an anti-aliased disk, reflect-101 border (spec §3.4, trap 7).

    The exact OpenCV-built kernel, including the 1.3 % / 1.1 % brightening at s4/s5, applied through FFT (like
    OpenCV's filter2D for kernels this large; equal to the direct correlation within ~1e-6). Size scaling: disk
    radius, alias sigma and grid grow with s = min(H, W) / 224 (see :func:`disk_kernel`).
    """
    kernel = _defocus_kernel(severity, size_scale(images))

    def blur(block: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(correlate2d_fft(block, kernel, "reflect101").clamp_(0.0, 1.0))

    return map_chunks(blur, images, fills_out=True)


# ---------------------------------------------------------------- glass_blur


_GLASS_STREAM = 1  # the offsets' stream (stream 0 is unused, as in earlier versions)
_U16, _U32, _FIELD = np.uint64(16), np.uint64(32), np.uint64(0xFFFF)


def glass_offsets(seeds: torch.Tensor, height: int, width: int, delta: int, iterations: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (dx, dy) of every visited pixel and iteration: int32 in [-δ, δ-1], each (N, iters, H-2δ, W-2δ).

    The reference draws ``randint(-δ, δ, 2)``: the upper bound is exclusive, hence the asymmetry (spec §3.5).
    Element [k, i, j] belongs to pixel (δ+1+i, δ+1+j) (row, column) in iteration k. Drawn as 16-bit fields f of
    the 64-bit words of stream 1 (a word holds (dx, dy) for two pixels), offset = ⌊f·2δ / 2^16⌋ - δ: uniform over
    the 2δ values (exactly when 2δ is a power of two, else within 2^-13 relative), at a quarter of the words and
    none of the float conversions that one uniform per value would cost.
    """
    rows, cols = height - 2 * delta, width - 2 * delta
    n, count = seeds.shape[0], rows * cols
    words = rng.bits(seeds, (iterations, (count + 1) // 2), stream=_GLASS_STREAM)
    fields = words.view(torch.int16).to(torch.int32).bitwise_and_(0xFFFF)  # 4 unsigned 16-bit fields per word
    offsets = fields.mul_(2 * delta).bitwise_right_shift_(16).sub_(delta).view(n, iterations, -1, 2)[:, :, :count]
    dx = offsets[..., 0].reshape(n, iterations, rows, cols)
    dy = offsets[..., 1].reshape(n, iterations, rows, cols)
    return dx, dy


def glass_shuffle(pixels: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, delta: int) -> torch.Tensor:
    """The reference's sequential "swap" loop (spec §3.5 steps 2-3) as exact parallel tensor ops.

    Reference: for h from H-δ down to δ+1, for w from W-δ down to δ+1: ``x[h,w], x[h',w'] = x[h',w'], x[h,w]``
    on numpy row views, which copies pixel q = (h+dy, w+dx) into p = (h, w) and leaves q unchanged. Each pixel
    is written only at its own visit, so p ends with final(q) if q was visited earlier in the scan (q in the
    visited square and q after p in row-major order), else with q's value at the start of the iteration.
    Those chains (a few links long) are resolved by pointer jumping over the visited square (log2 of the longest
    chain rounds, each over the still-unresolved pixels only: about a third, then a tenth, ...), giving each
    iteration as a map "p takes the value of pixel T(p)"; the iterations' maps are composed on indices and the
    pixels gathered once. Indices are int32 where the batch allows (half the memory traffic of int64). Identical
    results to the loop (tests/test_corruptions_blur.py).
    """
    n, c, h, w = pixels.shape
    device = pixels.device
    rh, rw, size = h - 2 * delta, w - 2 * delta, h * w  # the visited square: rows and columns δ+1 .. size-δ
    index = torch.int32 if 2 * n * c * size < 2 ** 31 else torch.int64
    full = torch.arange(size, dtype=index, device=device).view(h, w)
    square = full[delta + 1:h - delta + 1, delta + 1:w - delta + 1].reshape(1, -1)  # image index of each visited p
    square_index = torch.full((size,), -1, dtype=index, device=device)  # image index -> square index, else -1
    square_index[square.view(-1)] = torch.arange(rh * rw, dtype=index, device=device)
    # flat indices over the whole batch (image i's entries start at i * length): index_select beats gather
    square_base = (torch.arange(n, dtype=index, device=device) * (rh * rw)).view(n, 1)
    image_base = (torch.arange(n, dtype=index, device=device) * size).view(n, 1)
    source = (full.view(1, -1) + image_base).view(n, h, w)  # composed map: result(p) = pixels[source[p]]
    for k in range(dx.shape[1]):
        offset = (dy[:, k].to(device=device, dtype=index) * w).add_(dx[:, k].to(device=device, dtype=index))
        offset = offset.view(n, -1)  # q - p in image indices
        q = square + offset
        q_square = square_index.index_select(0, q.view(-1)).view(n, -1)
        # q was visited before p: inside the square and after p in row-major order
        linked = ((q_square >= 0) & (offset > 0)).view(-1)
        state = (q + image_base).view(-1).mul_(2).add_(linked)  # (flat index p copies from) * 2 + linked
        active = linked.nonzero().squeeze(1)
        if active.numel():
            successor = q_square.clamp_(min=0).add_(square_base).view(-1)  # followed only where p is linked
            _jump_pointers(state, successor, active)
        # value after this iteration = previous value at T(p); unvisited pixels keep theirs
        taken = source.view(-1).index_select(0, state.bitwise_right_shift_(1))
        source[:, delta + 1:h - delta + 1, delta + 1:w - delta + 1] = taken.view(n, rh, rw)
    # pixel (i, ch, p) = pixels.flat[(i·c + ch)·size + source[p] - i·size]
    planes = (torch.arange(c, dtype=index, device=device) * size).view(1, c, 1) + (image_base * (c - 1)).view(n, 1, 1)
    out = pixels.reshape(-1).index_select(0, (source.view(n, 1, size) + planes).view(-1))
    return out.view(n, c, h, w)


def glass_scan_loop(pixels, keys, gamma, iterations, delta, start, stop):
    """:func:`glass_shuffle` of :func:`glass_offsets` in place on numpy ``pixels`` (N, C, H, W), images
    start..stop-1, as the reference's scan itself (for :func:`corruptions.kernels.run_compiled`): for h from H-δ
    down to δ+1, for w from W-δ down to δ+1, pixel (h + dy, w + dx) is copied into (h, w). The offsets are drawn
    on the way, from the same words and 16-bit fields as :func:`glass_offsets` (``keys``/``gamma``: its stream,
    ``rng.Words.uint64_key_gamma``)."""
    _, channels, height, width = pixels.shape
    cols = width - 2 * delta
    pairs = (cols * (height - 2 * delta) + 1) // 2  # words per iteration: two pixels each
    for i in range(start, stop):
        for k in range(iterations):
            for h in range(height - delta, delta, -1):
                for w in range(width - delta, delta, -1):
                    p = (h - delta - 1) * cols + (w - delta - 1)
                    # pixel 2m: the low half of word m, 2m + 1: its high half
                    z = kernels.word(keys[i], k * pairs + p // 2, gamma) >> (_U32 * np.uint64(p & 1))
                    hq = h + ((np.int64(z >> _U16 & _FIELD) * 2 * delta) >> 16) - delta
                    wq = w + ((np.int64(z & _FIELD) * 2 * delta) >> 16) - delta
                    for c in range(channels):
                        pixels[i, c, h, w] = pixels[i, c, hq, wq]


def _jump_pointers(state: torch.Tensor, successor: torch.Tensor, active: torch.Tensor) -> None:
    """Pointer jumping in place over the linked entries ``active``: each takes over its successor's state (source
    and link bit) and successor, reading all before writing any, until no entry is linked. Unlinked entries'
    ``successor`` values are never followed."""
    ahead = successor.index_select(0, active)
    while active.numel():
        taken = state.index_select(0, ahead)
        further = successor.index_select(0, ahead)
        state.index_copy_(0, active, taken)
        successor.index_copy_(0, active, further)
        still = taken.bitwise_and(1).bool()
        active, ahead = active[still], further[still]


@register_corruption("glass_blur", category="blur", benchmark="imagenet_c", random=True,
                     params={s: {"sigma": a, "delta": d, "iterations": i} for s, (a, d, i) in GLASS.items()})
def glass_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Frosted glass: Gaussian blur, 8-bit truncation, local pixel scrambling, Gaussian blur (spec §3.5, trap 8).

    Same algorithm as the reference, in parallel: the first blur is truncated to 8 bit like ``np.uint8(255·g)``
    (blurred in float32: ~1e-5 of the pixels land one level off the float64 result); the scrambling reproduces the
    reference loop's copy (not swap) semantics, bottom-right to top-left scan and offsets in [-δ, δ-1] exactly
    (:func:`glass_shuffle`); only the random offsets come from ``corruptions.rng`` (see :func:`glass_offsets`)
    instead of numpy's global MT19937, so outputs agree in distribution, not pixel-for-pixel.
    Size scaling: sigma·s and δ = max(1, round(δ·s)), s = min(H, W) / 224; iterations unchanged. Runs in ~2 MiB
    blocks of images on CPU. A side of at most 2δ + 1 px (the scan would visit nothing) is edge-replicated to
    2δ + 2 px, evenly on both ends, and cropped back afterwards (the first blur's border is edge replication too).
    """
    sigma, delta, iterations = GLASS[severity]
    scale = size_scale(images)
    sigma, delta = sigma * scale, max(1, round(delta * scale))
    height, width = images.shape[-2:]
    grow_h, grow_w = (max(0, 2 * delta + 2 - side) for side in (height, width))
    if not (grow_h or grow_w):
        return glass_scramble(images, seeds, sigma, delta, iterations)
    top, left = grow_h // 2, grow_w // 2
    padded = F.pad(images, (left, grow_w - left, top, grow_h - top), mode="replicate")
    out = glass_scramble(padded, seeds, sigma, delta, iterations)
    return out[..., top:top + height, left:left + width].contiguous()


def glass_scramble(images: torch.Tensor, seeds: torch.Tensor, sigma: float, delta: int, iterations: int
                   ) -> torch.Tensor:
    """:func:`glass_blur` on images larger than 2δ + 1 px, with its size-scaled parameters."""
    h, w = images.shape[-2:]

    def scramble(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        first = gaussian_filter(block.to(work_dtype(images)), sigma)
        pixels8 = torch.floor(first.clamp_(0.0, 1.0).mul_(255.0))
        if kernels.usable(pixels8):  # the scan itself, compiled, drawing its offsets as it goes
            scrambled = pixels8.contiguous()
            keys, gamma = rng.Words(block_seeds, _GLASS_STREAM).uint64_key_gamma()
            kernels.run_compiled(glass_scan_loop, len(scrambled), scrambled.numpy(), keys, gamma, iterations, delta)
        else:
            dx, dy = glass_offsets(block_seeds, h, w, delta, iterations)
            scrambled = glass_shuffle(pixels8, dx, dy, delta)
        out.copy_(gaussian_filter(scrambled.div_(255.0), sigma).clamp_(0.0, 1.0))

    return map_chunks(scramble, images, seeds.to(images.device), fills_out=True)


# ---------------------------------------------------------------- motion_blur


def motion_blur_levels(levels: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """:func:`motion_blur` on uint8 grey levels, uint8 out (``Corruption.levels_fn``): the reference reads and
    writes 8-bit images, so the levels go in and come out as they are."""
    radius, sigma = MOTION[severity]
    scale = size_scale(levels)
    return _motion_blur(levels, radius * scale, sigma * scale, _motion_angles(seeds, levels.device), quantize=True)


def _motion_angles(seeds: torch.Tensor, device) -> torch.Tensor:
    """One angle per image, U(-45°, 45°) in degrees (float64), from stream 0 of its seed."""
    low, high = _MOTION_ANGLE_RANGE
    return low + (high - low) * rng.uniform(seeds.to(device), (1,), stream=0, dtype=torch.float64).view(-1)


@register_corruption("motion_blur", category="blur", benchmark="imagenet_c", random=True, levels_fn=motion_blur_levels,
                     params={s: {"radius": r, "sigma": g, "angle": _MOTION_ANGLE_RANGE}
                             for s, (r, g) in MOTION.items()})
def motion_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Camera shake: ImageMagick's one-sided Gaussian motion blur at a random angle U(-45°, 45°) (spec §3.6, §2.5).

    One angle per image from its seed; the output is ImageMagick's 8-bit result (step-5 quantisation) / 255, as
    the reference returns uint8. Size scaling: radius·s and sigma·s, s = min(H, W) / 224.
    """
    radius, sigma = MOTION[severity]
    scale = size_scale(images)
    work = images.to(work_dtype(images))
    angles = _motion_angles(seeds, images.device)
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


@functools.lru_cache(maxsize=256)
def _zoom_taps(size: int, factor: float, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """clipped_zoom along one axis as two taps per output: (source index (size, 2) int64, weights (size, 2) f64).

    Output i (after the trim) samples the centre crop at (i + trim)·(crop - 1)/(zoomed - 1) (corner-aligned
    bilinear, scipy ``zoom(order=1)``), positions in float64 like scipy's.
    """
    crop, start, zoomed, trim = zoom_geometry(size, factor)
    position = torch.arange(size, dtype=torch.float64) + trim
    if zoomed > 1:
        position = position * ((crop - 1) / (zoomed - 1))
    first = position.floor().clamp_(0, max(crop - 2, 0))
    frac = position - first
    index = torch.stack([first, (first + 1).clamp_(max=crop - 1)], dim=1).to(torch.int64) + start
    return index.to(device), torch.stack([1.0 - frac, frac], dim=1).to(device)


def _zoom_rows(planes: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Interpolate the rows of (P, H, W) planes: out[p, i] = Σ_t weights[i, t] · planes[p, index[i, t]], as one
    ``embedding_bag`` (a fused gather + weighted sum of whole rows)."""
    p, h, w = planes.shape
    rows = (torch.arange(p, device=planes.device).view(p, 1, 1) * h + index.view(1, -1, 2)).view(-1, 2)
    taps = weights.to(planes.dtype).view(1, -1, 2).expand(p, -1, 2).reshape(-1, 2)
    return F.embedding_bag(rows, planes.reshape(p * h, w), per_sample_weights=taps, mode="sum").view(p, -1, w)


@register_corruption("zoom_blur", category="blur", benchmark="imagenet_c", random=False,
                     params={s: {"factors": tuple(round(z, 2) for z in zoom_factors(s))} for s in ZOOM})
def zoom_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Radial blur: the mean of the image and its centre zooms by each factor (spec §3.7).

    (x + Σ_z clipped_zoom(x, z)) / (len + 1) accumulated in float32 like the reference; 1.00 is in the list, so the
    unzoomed image counts twice. Each zoom is separable: rows, then columns, each a fused two-tap gather
    (``embedding_bag``), the columns done as rows of the transposed planes. Size scaling: none needed, the factors
    are relative and clipped_zoom's crop geometry (ceil(size / z), top-left trim) follows the actual H and W.
    """
    factors = zoom_factors(severity)
    h, w = images.shape[-2:]
    device = str(images.device)
    row_taps = [_zoom_taps(h, factor, device) for factor in factors]
    col_taps = [_zoom_taps(w, factor, device) for factor in factors]

    if kernels.usable(images) and images.numel():
        return _zoom_blur_compiled(images, row_taps, col_taps)

    def radial(block: torch.Tensor, out: torch.Tensor) -> None:
        planes = block.to(torch.float32).reshape(-1, h, w)
        total_t = None  # Σ_z of the zooms, transposed: (P, W, H)
        for (rows, row_w), (cols, col_w) in zip(row_taps, col_taps):
            zoomed_t = _zoom_rows(_zoom_rows(planes, rows, row_w).transpose(1, 2).contiguous(), cols, col_w)
            total_t = zoomed_t if total_t is None else total_t.add_(zoomed_t)
        total = total_t.transpose(1, 2).add(planes).div_(len(factors) + 1)
        out.copy_(total.view(out.shape).clamp_(0.0, 1.0))

    return map_chunks(radial, images, fills_out=True)


def _zoom_blur_compiled(images: torch.Tensor, row_taps: list, col_taps: list) -> torch.Tensor:
    """:func:`zoom_blur` by :func:`zoom_blur_loop` on CPU: the same float32 operations, without the transposes and
    temporaries (each zoom made row by row in cache): ~4x less CPU time."""
    n, c, h, w = images.shape
    planes = images.to(torch.float32).contiguous()
    rows, row_w = (torch.stack(t) for t in zip(*row_taps))  # (zooms, H, 2)
    cols, col_w = (torch.stack(t).transpose(1, 2).contiguous() for t in zip(*col_taps))  # (zooms, 2, W)
    spans = torch.stack([cols.amin(dim=(1, 2)), cols.amax(dim=(1, 2)) + 1], dim=1)  # crop columns per zoom
    out = torch.empty((n, c, h, w), dtype=torch.float32)
    scratch = np.empty((n, w), dtype=np.float32)
    # indices as uint64: numba then skips the negative-index wraparound, which would keep the loops scalar
    kernels.run_compiled(zoom_blur_loop, n, planes.numpy(), rows.numpy().astype(np.uint64),
                         row_w.to(torch.float32).numpy(), cols.numpy().astype(np.uint64),
                         col_w.to(torch.float32).numpy(), spans.numpy(), out.numpy(), scratch)
    return out.to(images.dtype)


def zoom_blur_loop(planes, rows, row_w, cols, col_w, spans, out, scratch, start, stop):
    """:func:`zoom_blur`'s mean for images start..stop-1 (for :func:`corruptions.kernels.run_compiled`), in the
    torch route's float32 arithmetic: per zoom and output row, the row pass r = fma(w1, x[i1], w0 * x[i0]) over the
    crop's columns (``embedding_bag``'s two-tap sum), then the column pass on r the same way, summed over the zooms
    in order; then (sum + x) / (zooms + 1) clipped to [0, 1]. ``scratch`` (N, W): one row pass per image."""
    _, channels, height, width = planes.shape
    zooms = rows.shape[0]
    for i in range(start, stop):
        r = scratch[i]
        for c in range(channels):
            x, total = planes[i, c], out[i, c]
            for f in range(zooms):
                lo, hi = spans[f, 0], spans[f, 1]
                c0, c1, cw0, cw1 = cols[f, 0], cols[f, 1], col_w[f, 0], col_w[f, 1]
                for y in range(height):
                    # slices indexed from 0: provably non-negative indices, so the loop vectorises
                    a, b, part = x[rows[f, y, 0], lo:hi], x[rows[f, y, 1], lo:hi], r[lo:hi]
                    w0, w1 = row_w[f, y, 0], row_w[f, y, 1]
                    for j in range(hi - lo):
                        part[j] = kernels.fma(w1, b[j], w0 * a[j])
                    t = total[y]
                    for j in range(width):
                        z = kernels.fma(cw1[j], r[c1[j]], cw0[j] * r[c0[j]])
                        t[j] = z if f == 0 else t[j] + z
            for y in range(height):
                t, row = total[y], x[y]
                for j in range(width):
                    v = (t[j] + row[j]) / np.float32(zooms + 1)
                    t[j] = min(max(v, np.float32(0.0)), np.float32(1.0))


# ---------------------------------------------------------------- gaussian_blur


_FFT_MIN_TAPS = 35  # from this 1-D kernel length on (sigma > 4), one 2-D FFT correlation beats shifted sums


def blur_gaussian_nearest(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """scikit-image's Gaussian (truncate 4, edge-replicate border) of (N, C, H, W) in float32 (float64 stays
    float64): separable shifted sums for short kernels, one FFT correlation with the outer-product kernel for long
    ones (equal within ~1e-6)."""
    work = images.to(work_dtype(images))
    taps = gaussian_kernel1d(sigma)
    if taps.numel() < _FFT_MIN_TAPS:
        return gaussian_filter(work, sigma)
    return correlate2d_fft(work, torch.outer(taps, taps), "nearest")


@register_corruption("gaussian_blur", category="blur", benchmark="imagenet_c_extra", random=False,
                     params={s: {"sigma": v} for s, v in GAUSSIAN_SIGMA.items()})
def gaussian_blur(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """scikit-image Gaussian blur, edge-replicate border, truncate 4 (spec §4.2). Size scaling: sigma·s."""
    sigma = GAUSSIAN_SIGMA[severity] * size_scale(images)

    def blur(block: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(blur_gaussian_nearest(block, sigma).clamp_(0.0, 1.0))

    return map_chunks(blur, images, fills_out=True)
