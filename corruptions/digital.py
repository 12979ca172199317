"""Digital corruptions of ImageNet-C: spec §3.12-3.15, §4.4, §2.6.

contrast, elastic_transform, pixelate, jpeg_compression and the extra saturate (category "digital"; brightness,
ImageNet-C's fourth weather corruption, is in ``corruptions.weather``), plus :func:`jpeg_round_trip`, the uint8 +
JPEG step that the released ImageNet-C files went through (spec §1.3). Everything is batched torch; only JPEG
coding runs on CPU, per image (libjpeg through torchvision, or Pillow where torchvision has dropped its codec:
the same bytes either way, bit-identical to PIL's round trip), and its result is moved back to the input's
device. The benchmark corruptions are defined (so registered) in the paper's order, which is the order
``list_corruptions`` reports them in.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from corruptions import kernels, rng
from corruptions.common import REFERENCE_SIZE, size_scale, work_dtype
from corruptions.filters import empty_batch, gaussian_filter, images_per_chunk, map_chunks
from corruptions.registry import register_corruption

CONTRAST_FACTOR = {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1, 5: 0.05}  # §3.12
SATURATE_SCALE_SHIFT = {1: (0.3, 0.0), 2: (0.1, 0.0), 3: (2.0, 0.0), 4: (5.0, 0.1), 5: (20.0, 0.2)}  # §4.4
PIXELATE_FACTOR = {1: 0.6, 2: 0.5, 3: 0.4, 4: 0.3, 5: 0.25}  # §3.14: intermediate size int(224 * f)
JPEG_QUALITY = {1: 25, 2: 18, 3: 15, 4: 10, 5: 7}  # §3.15
# §3.13: MK224 writes the elastic parameters as multiples of 244 (not 224); these are the values it used.
ELASTIC_ALPHA_SIGMA_JITTER = {
    1: (244 * 2, 244 * 0.7, 244 * 0.1),
    2: (244 * 2, 244 * 0.08, 244 * 0.2),
    3: (244 * 0.05, 244 * 0.01, 244 * 0.02),
    4: (244 * 0.07, 244 * 0.01, 244 * 0.02),
    5: (244 * 0.12, 244 * 0.01, 244 * 0.02),
}
ELASTIC_TRUNCATE = 3.0  # the displacement smoothing's Gaussian is cut at int(3 sigma + 0.5)

# Values this close below a grey level count as that level when truncating to uint8: float32 rounding puts results
# that the float64 reference computes exactly on a level (common, spec §9 trap 3) a hair below it.
_TRUNCATE_TOLERANCE = 2.0 ** -10


# ----------------------------------------------------------------------------------------------- photometric


@register_corruption("contrast", category="digital", benchmark="imagenet_c", random=False,
                     params={s: {"factor": v} for s, v in CONTRAST_FACTOR.items()})
def contrast(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Shrink every channel toward its own mean over the image, (x - mean_c) * k + mean_c (spec §3.12; per channel,
    not luminance); a whole-image statistic, so size-independent. float32 (means summed in float64)."""
    factor = CONTRAST_FACTOR[severity]
    dtype = work_dtype(images)

    def flatten(block: torch.Tensor, out: torch.Tensor) -> None:
        x = block.to(dtype)
        offset = (x.mean(dim=(2, 3), keepdim=True, dtype=torch.float64) * (1.0 - factor)).to(dtype)
        out.copy_(torch.add(offset, x, alpha=factor).clamp_(0.0, 1.0))

    return map_chunks(flatten, images, fills_out=True)


@register_corruption("saturate", category="digital", benchmark="imagenet_c_extra", random=False,
                     params={s: {"scale": m, "shift": a} for s, (m, a) in SATURATE_SCALE_SHIFT.items()})
def saturate(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Scale the HSV saturation, S' = clip(S * m + a, 0, 1) (spec §4.4), via the closed form of §2.6.

    Hue is unchanged, so each channel moves to V - (V - ch) * S'/S. Neutral pixels (S = 0) have hue 0 (red) in
    scikit-image's convention and become (V, V(1 - S'), V(1 - S')): the red tint of greys at severities 4-5 is the
    reference's behaviour. Pointwise, so size-independent. float32, ~2 MiB blocks.
    """
    scale, shift = SATURATE_SCALE_SHIFT[severity]
    dtype = work_dtype(images)

    def resaturate(block: torch.Tensor, out: torch.Tensor) -> None:
        x = block.to(dtype)
        value = x.amax(dim=1, keepdim=True)
        spread = value - x.amin(dim=1, keepdim=True)
        chromatic = spread > 0
        sat = spread / value.masked_fill(~chromatic, 1.0)  # chromatic => V > 0; else spread = 0
        new_sat = (sat * scale).add_(shift).clamp_(0.0, 1.0)
        ratio = new_sat / sat.masked_fill_(~chromatic, 1.0)
        coloured = value - (value - x) * ratio
        faded = value * (1.0 - new_sat)
        grey = torch.cat([value, faded, faded], dim=1)
        out.copy_(torch.where(chromatic, coloured, grey).clamp_(0.0, 1.0))

    return map_chunks(resaturate, images, fills_out=True)


# ----------------------------------------------------------------------------------------------- elastic warp


@functools.lru_cache(maxsize=32)
def _reflect_gaussian_matrix_cpu(size: int, sigma: float, truncate: float) -> torch.Tensor:
    """scipy ``gaussian_filter1d(mode='reflect', truncate)`` on a length-``size`` signal as a (size, size) matrix.

    Taps t in [-r, r], r = int(truncate * sigma + 0.5), weights exp(-t^2 / 2 sigma^2) normalised; the signal is
    extended half-sample symmetrically, i.e. periodically with period 2*size (d c b a | a b c d | d c b a ...), so
    index i + t folds to m = (i + t) mod 2 size, then m if m < size else 2 size - 1 - m. Folding the kernel into a
    matrix handles kernels far longer than the signal (1025 taps on 224 pixels at elastic severity 1), where
    ``F.pad(mode='reflect')`` has the wrong mirror type and cannot pad that far (spec §3.13, §9 trap 15).
    """
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * taps.astype(np.float64) ** 2)
    kernel /= kernel.sum()
    rows = np.repeat(np.arange(size), taps.size)
    source = (rows + np.tile(taps, size)) % (2 * size)
    source = np.where(source < size, source, 2 * size - 1 - source)
    matrix = np.zeros((size, size), dtype=np.float64)
    np.add.at(matrix, (rows, source), np.tile(kernel, size))
    return torch.from_numpy(matrix)


@functools.lru_cache(maxsize=32)
def _reflect_gaussian_matrix(size: int, sigma: float, truncate: float, device: str) -> torch.Tensor:
    """The float32 matrix on a device (cached)."""
    return _reflect_gaussian_matrix_cpu(size, sigma, truncate).to(device=device, dtype=torch.float32)


def elastic_control_points(height: int, width: int) -> torch.Tensor:
    """The three (x, y) points whose jitter defines the random affine: centre +- min(H, W) // 3.

    At 224: (186, 186), (186, 38), (38, 38) (spec §3.13). MK224 builds the centre as (H // 2, W // 2) and uses it
    as (x, y); this uses (W // 2, H // 2), the same for square images.
    """
    cx, cy, half = float(width // 2), float(height // 2), float(min(height, width) // 3)
    return torch.tensor([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], dtype=torch.float64)


def elastic_apply(images: torch.Tensor, jitter: torch.Tensor, noise_x: torch.Tensor, noise_y: torch.Tensor,
                  alpha: float, sigma: float) -> torch.Tensor:
    """The MK224 elastic transform for given random draws (separated from the sampling so it can be checked
    against a reference with identical draws).

    ``jitter`` (N, 3, 2): offsets added to the (x, y) control points; ``noise_x``/``noise_y`` (N, H, W): U(-1, 1)
    fields. Steps (spec §3.13): (1) affine warp mapping the control points to the jittered ones, bilinear,
    reflect-101 border (OpenCV ``warpAffine`` with float coordinates, i.e. OpenCV >= 5; OpenCV <= 4.12, used for the
    2018 files, rounds source coordinates to 1/32 px, which differs by up to ~6 levels at edges); (2) displacement
    dx = alpha * G_sigma(noise_x), dy likewise, Gaussian with half-sample reflect and truncate 3, cast to float32;
    (3) bilinear resampling at (row + dy, col + dx) with half-sample reflect border (scipy ``map_coordinates``).
    Both resamplings are ``grid_sample``; on CPU in float32 :func:`elastic_warp_loop` does them in one compiled
    pass per image with the same bits (where :func:`_grid_sample_fma` finds how this torch build rounds).
    """
    displacement = _elastic_displacement(noise_x, noise_y, alpha, sigma, images.device)
    return _elastic_warp(images, jitter, displacement)


def _elastic_warp(images: torch.Tensor, jitter: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Steps (1) and (3) of :func:`elastic_apply`, given the (N, 2, H, W) float32 displacement of step (2)."""
    height, width = images.shape[-2:]
    dtype = work_dtype(images)
    inverse = _elastic_inverse(jitter, height, width, images.device)
    fused = _compiled_fma(images)
    if fused is not None:
        out = torch.empty(images.shape, dtype=torch.float32)
        kernels.run_compiled(elastic_warp_loop, len(out), images.to(dtype).contiguous().numpy(), inverse.numpy(),
                             displacement.contiguous().numpy(), *_affine_scale(height, width), fused, out.numpy())
        return out.to(images.dtype)
    warped = _elastic_affine(images.to(dtype), inverse)
    # (3) sample at (row + dy, col + dx); align_corners=False + reflection = scipy's half-sample 'reflect'
    grid_rows, grid_cols = _pixel_grid(height, width, images.device)
    displacement = displacement.to(torch.float64)
    sample_x = (2.0 * (grid_cols + displacement[:, 0]) + 1.0) / width - 1.0
    sample_y = (2.0 * (grid_rows + displacement[:, 1]) + 1.0) / height - 1.0
    grid = torch.stack([sample_x, sample_y], dim=-1).to(dtype)
    out = F.grid_sample(warped, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0).to(images.dtype)


def _compiled_fma(images: torch.Tensor) -> bool | None:
    """Whether :func:`elastic_warp_loop` runs on ``images`` (float32 work on the CPU, compiled loops on, a torch
    build whose grid_sample the loop reproduces): then how it rounds (:func:`_grid_sample_fma`), else None."""
    return _grid_sample_fma() if work_dtype(images) == torch.float32 and kernels.usable(images) else None


def _pixel_grid(height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) index of every pixel, each float64 (H, W)."""
    cols = torch.arange(width, dtype=torch.float64, device=device)
    rows = torch.arange(height, dtype=torch.float64, device=device)
    return torch.meshgrid(rows, cols, indexing="ij")


def _elastic_inverse(jitter: torch.Tensor, height: int, width: int, device) -> torch.Tensor:
    """The inverse affine of step (1) (output -> source) from the jittered points back to the control points,
    float64 (N, 3, 2): source (x, y) = x * A[0] + y * A[1] + A[2]."""
    src = elastic_control_points(height, width).to(device)
    # MK224 adds float32 jitter to float32 points in float32
    dst = (src.to(torch.float32).unsqueeze(0) + jitter.to(device=device, dtype=torch.float32)).to(torch.float64)
    ones = torch.ones(len(dst), 3, 1, dtype=torch.float64, device=device)
    return torch.linalg.solve(torch.cat([dst, ones], dim=2), src.unsqueeze(0).expand(len(dst), 3, 2))


def _affine_scale(height: int, width: int) -> tuple[float, float]:
    """Source pixel (x, y) -> grid_sample's [-1, 1] with align_corners=True: times these, minus 1."""
    return 2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)


def _elastic_affine(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Step (1) of :func:`elastic_apply`: the affine warp of ``x`` (in its dtype) by ``inverse``, bilinear with
    OpenCV's reflect-101 border. Source coordinates in float64, term by term in a fixed order (a matrix product's
    order is the BLAS library's, which a compiled loop could not repeat)."""
    height, width = x.shape[-2:]
    grid_rows, grid_cols = _pixel_grid(height, width, x.device)
    a = inverse[:, :, None, None, :]  # (N, 3, 1, 1, 2): per image, the (x, y) coefficients
    source_xy = grid_cols[..., None] * a[:, 0] + grid_rows[..., None] * a[:, 1] + a[:, 2]  # (N, H, W, 2)
    # align_corners=True + reflection reflects about the border pixel centres: OpenCV's BORDER_REFLECT_101
    scale_xy = torch.tensor(_affine_scale(height, width), dtype=torch.float64, device=x.device)
    return F.grid_sample(x, (source_xy * scale_xy - 1.0).to(x.dtype), mode="bilinear",
                         padding_mode="reflection", align_corners=True)


def _elastic_displacement(noise_x: torch.Tensor, noise_y: torch.Tensor, alpha: float, sigma: float,
                          device) -> torch.Tensor:
    """Step (2) of :func:`elastic_apply`: alpha times the smoothed (N, H, W) noise fields, float32 (N, 2, H, W).

    G = A_H @ field @ A_W^T with the folded reflect-Gaussian matrices, in float32 (the fields are averages of +-1
    noise: ~1e-7 relative error moves a pixel < 1e-4 px). Short kernels (sigma 2.44 at s3-s5: 15 taps) as
    separable shifted sums, long ones (folded many times over the image) as one matrix product per axis.
    """
    n, height, width = noise_x.shape
    fields = torch.stack([noise_x, noise_y], dim=1).to(device=device, dtype=torch.float32)  # (N, 2, H, W)
    if 2 * int(ELASTIC_TRUNCATE * sigma + 0.5) + 1 <= min(height, width) // 4:
        smoothed = gaussian_filter(fields, sigma, truncate=ELASTIC_TRUNCATE, mode="reflect")
    else:
        key = (float(sigma), ELASTIC_TRUNCATE, str(device))
        smooth_h = _reflect_gaussian_matrix(height, *key)
        smooth_w_t = _reflect_gaussian_matrix(width, *key).T
        rows = torch.matmul(fields, smooth_w_t).transpose(-1, -2)  # (N, 2, W, H)
        smoothed = torch.matmul(rows.reshape(-1, height), smooth_h.T).view(n, 2, width, height).transpose(-1, -2)
    return smoothed.mul_(alpha)


def elastic_warp_loop(images, inverse, displacement, scale_x, scale_y, fused, out, start, stop):
    """:func:`elastic_apply`'s two resamplings for images start..stop-1, compiled, float32: row by row, the
    source points of the affine (float64, term by term as :func:`_elastic_affine`) sampled into a scratch image,
    then the displaced points (float64 as the torch route's grid) sampled from it into ``out``, clipped to
    [0, 1]; every point as ``grid_sample`` samples it (:func:`bilinear_taps`, :func:`bilinear_row`)."""
    channels, height, width = images.shape[1:]
    warped = np.empty((channels, height * width), dtype=np.float32)
    gx, gy = np.empty(width, dtype=np.float32), np.empty(width, dtype=np.float32)
    offsets, weights = np.empty((4, width), dtype=np.uint64), np.empty((4, width), dtype=np.float32)
    inside = np.empty((2, width), dtype=np.bool_)
    for i in range(start, stop):
        a, src, result = inverse[i], images[i].reshape(channels, -1), out[i].reshape(channels, -1)
        for h in range(height):
            for w in range(width):
                sx = np.float64(w) * a[0, 0] + np.float64(h) * a[1, 0] + a[2, 0]
                sy = np.float64(w) * a[0, 1] + np.float64(h) * a[1, 1] + a[2, 1]
                gx[w], gy[w] = np.float32(sx * scale_x - 1.0), np.float32(sy * scale_y - 1.0)
            bilinear_taps(gx, gy, height, width, True, fused, offsets, weights, inside)
            bilinear_row(src, offsets, weights, inside, fused, warped[:, h * width:(h + 1) * width])
        for h in range(height):
            dx, dy = displacement[i, 0, h], displacement[i, 1, h]
            for w in range(width):
                gx[w] = np.float32((2.0 * (np.float64(w) + np.float64(dx[w])) + 1.0) / np.float64(width) - 1.0)
                gy[w] = np.float32((2.0 * (np.float64(h) + np.float64(dy[w])) + 1.0) / np.float64(height) - 1.0)
            bilinear_taps(gx, gy, height, width, False, fused, offsets, weights, inside)
            row = result[:, h * width:(h + 1) * width]
            bilinear_row(warped, offsets, weights, inside, fused, row)
            for c in range(channels):
                for w in range(width):
                    v = row[c, w]
                    row[c, w] = np.float32(0.0) if v < 0.0 else (np.float32(1.0) if v > 1.0 else v)


@kernels.jitable
def bilinear_taps(gx, gy, height, width, align_corners, fused, offsets, weights, inside):
    """Where ``F.grid_sample(..., 'bilinear', 'reflection', align_corners)`` samples a row of float32 grid points
    (gx, gy) in an image of height x width, in the arithmetic of torch's vectorised CPU kernel
    (GridSamplerKernel.cpp): unnormalise, reflect, clip (:func:`_reflected_coordinate`), floor, the four products
    of distances. Writes per point the flat offsets of its nw, ne, sw, se pixels and their weights, and whether
    the east and south neighbours exist (``inside``; a missing one is read at nw's offset and counts as 0)."""
    one, step, row = np.float32(1.0), np.uint64(1), np.uint64(width)
    for w in range(gx.shape[0]):
        x = _reflected_coordinate(gx[w], width, align_corners, fused)
        y = _reflected_coordinate(gy[w], height, align_corners, fused)
        x_w, y_n = np.float32(np.floor(x)), np.float32(np.floor(y))
        west, north = x - x_w, y - y_n  # distances to the west and north sides
        east, south = one - west, one - north
        weights[0, w], weights[1, w] = south * east, south * west
        weights[2, w], weights[3, w] = north * east, north * west
        ix, iy = np.uint64(x_w), np.uint64(y_n)  # >= 0: clipped
        has_east, has_south = ix + step < row, iy + step < np.uint64(height)
        nw = iy * row + ix
        offsets[0, w] = nw
        offsets[1, w] = nw + step if has_east else nw
        offsets[2, w] = nw + row if has_south else nw
        offsets[3, w] = nw + row + step if has_east and has_south else nw
        inside[0, w], inside[1, w] = has_east, has_south


@kernels.jitable
def bilinear_row(src, offsets, weights, inside, fused, dst):
    """A row of bilinear samples of ``src`` (C, H*W) at :func:`bilinear_taps`' points into ``dst`` (C, row):
    (nw * v_nw + ne * v_ne) + sw * v_sw + se * v_se in order, as fused multiply-adds where the build fuses."""
    zero = np.float32(0.0)
    for c in range(src.shape[0]):
        plane, out = src[c], dst[c]
        for w in range(out.shape[0]):
            v_nw = plane[offsets[0, w]]
            v_ne = plane[offsets[1, w]] if inside[0, w] else zero
            v_sw = plane[offsets[2, w]] if inside[1, w] else zero
            v_se = plane[offsets[3, w]] if inside[0, w] and inside[1, w] else zero
            if fused:
                out[w] = kernels.fma(v_se, weights[3, w], kernels.fma(v_sw, weights[2, w],
                                     kernels.fma(v_ne, weights[1, w], v_nw * weights[0, w])))
            else:
                out[w] = v_nw * weights[0, w] + v_ne * weights[1, w] + v_sw * weights[2, w] + v_se * weights[3, w]


@kernels.jitable
def _reflected_coordinate(g, size, align_corners, fused):
    """grid_sample's source coordinate of normalised ``g`` along an axis of ``size`` pixels, reflected into the
    image and clipped (NaN -> 0), float32 (:func:`bilinear_taps`)."""
    one, zero = np.float32(1.0), np.float32(0.0)
    if align_corners:
        if size <= 1:
            return zero
        x = (g + one) * (np.float32(size - 1) / np.float32(2.0))
        low, twice_span = zero, np.float32(size - 1) * np.float32(2.0)
    else:
        scale, half = np.float32(size) / np.float32(2.0), np.float32(0.5)
        x = kernels.fma(g + one, scale, -half) if fused else (g + one) * scale - half
        low, twice_span = np.float32(-0.5), np.float32(size) * np.float32(2.0)
    distance = abs(x - low)
    extra = distance - np.float32(np.trunc(distance / twice_span)) * twice_span
    x = min(extra, twice_span - extra) + low
    x = x if x > zero else zero
    return min(np.float32(size - 1), x)


@functools.lru_cache(maxsize=1)
def _grid_sample_fma() -> bool | None:
    """How this torch build's CPU ``grid_sample`` rounds (bilinear, reflection): True where it fuses multiply-adds
    (GCC contracts the AVX2/AVX-512 kernels' vector arithmetic), False where it does not, None where
    :func:`grid_sample_loop` matches neither (then :func:`elastic_apply` keeps the torch route). Decided once
    per process on a small image and grid that reach every reflection and border case."""
    generator = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 11, 17, generator=generator)
    grid = (torch.rand(2, 13, 19, 2, generator=generator) * 2.0 - 1.0) * 3.5
    expected = [F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=align)
                for align in (True, False)]
    for fused in (True, False):
        got = [torch.empty_like(e) for e in expected]
        for align, out in zip((True, False), got):
            kernels.compiled(grid_sample_loop)(src.numpy(), grid.numpy(), align, fused, out.numpy(), 0, len(src))
        if all(torch.equal(g, e) for g, e in zip(got, expected)):
            return fused
    return None


def grid_sample_loop(src, grid, align_corners, fused, out, start, stop):
    """``F.grid_sample(src, grid, 'bilinear', 'reflection', align_corners)`` for images start..stop-1, compiled, row
    by row (:func:`bilinear_taps`, :func:`bilinear_row`): the twin that :func:`_grid_sample_fma` and the tests
    check."""
    channels, height, width = src.shape[1:]
    rows, cols = grid.shape[1:3]
    offsets, weights = np.empty((4, cols), dtype=np.uint64), np.empty((4, cols), dtype=np.float32)
    inside = np.empty((2, cols), dtype=np.bool_)
    for i in range(start, stop):
        flat, result = src[i].reshape(channels, -1), out[i].reshape(channels, -1)
        for h in range(rows):
            gx, gy = grid[i, h, :, 0].copy(), grid[i, h, :, 1].copy()
            bilinear_taps(gx, gy, height, width, align_corners, fused, offsets, weights, inside)
            bilinear_row(flat, offsets, weights, inside, fused, result[:, h * cols:(h + 1) * cols])


def elastic_parameters(severity: int, scale: float) -> tuple[float, float, float]:
    """(alpha, sigma, jitter) at size scale s: sigma and jitter scale with s; alpha with s**2, because smoothing
    white noise with an s-times wider Gaussian divides its amplitude by s, and the displacement in pixels must grow
    by s for the warp to look the same on an s-times larger image."""
    alpha, sigma, jitter = ELASTIC_ALPHA_SIGMA_JITTER[severity]
    return alpha * scale * scale, sigma * scale, jitter * scale


@register_corruption("elastic_transform", category="digital", benchmark="imagenet_c", random=True,
                     params={s: {"alpha": a, "sigma": g, "affine_jitter": j}
                             for s, (a, g, j) in ELASTIC_ALPHA_SIGMA_JITTER.items()})
def elastic_transform(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Random affine jitter plus a smooth random displacement field: the MK224 algorithm with its 244-based
    parameters (spec §3.13; not imagecorruptions' different elastic transform). See :func:`elastic_apply`.

    Draws per image: 6 uniforms U(-eps, eps) for the control points (stream 0, float64), then two U(-1, 1) fields
    for dx (stream 1) and dy (stream 2), float32 (two per random word: the fields are smoothed in float32 anyway).
    Resolution: sigma and eps scale with s = min(H, W) / 224, alpha with s**2
    (:func:`elastic_parameters`), so displacements in pixels scale with s.
    """
    height, width = images.shape[-2:]
    alpha, sigma, eps = elastic_parameters(severity, size_scale(images))

    def jitter(block_seeds: torch.Tensor) -> torch.Tensor:
        return (2.0 * rng.uniform(block_seeds, (3, 2), stream=0, dtype=torch.float64) - 1.0) * eps

    def displacement(block: torch.Tensor, block_seeds: torch.Tensor) -> torch.Tensor:
        noise_x = rng.uniform(block_seeds, (height, width), stream=1).mul_(2.0).sub_(1.0)
        noise_y = rng.uniform(block_seeds, (height, width), stream=2).mul_(2.0).sub_(1.0)
        return _elastic_displacement(noise_x, noise_y, alpha, sigma, images.device)

    def warp(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(_elastic_warp(block, jitter(block_seeds), displacement(block, block_seeds)))

    if _compiled_fma(images) is None:
        return map_chunks(warp, images, seeds, fills_out=True)
    # compiled: the displacement fields block by block, then one warp of the whole batch (even thread spans)
    return _elastic_warp(images, jitter(seeds), map_chunks(displacement, images, seeds))


# ----------------------------------------------------------------------------------------------------- pixelate

_PIL_PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2 bits of fixed-point coefficients


@functools.lru_cache(maxsize=64)
def _pil_box_weights_cpu(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's BOX resampling for one axis as an (out, in) matrix of its fixed-point integer coefficients.

    Spec §3.14: the box of width scale = in/out, centred at (o + 0.5) * scale, is evaluated at input pixel centres
    with the rule -0.5 < (i + 0.5 - centre) / max(scale, 1) <= 0.5; weights normalised, then rounded to 22-bit
    fixed point. Not an area average (``F.interpolate(mode='area')`` differs by up to ~170 levels).
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for o in range(out_size):
        centre = (o + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        stop = min(int(centre + support + 0.5), in_size)
        taps = [1.0 if -0.5 < (i + 0.5 - centre) / filter_scale <= 0.5 else 0.0 for i in range(first, stop)]
        total = sum(taps)
        for i, tap in zip(range(first, stop), taps):
            weights[o, i] = math.floor(0.5 + (tap / total) * (1 << _PIL_PRECISION_BITS)) if total else 0.0
    return weights


@functools.lru_cache(maxsize=64)
def _pil_box_taps(in_size: int, out_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The non-zero entries of :func:`_pil_box_weights_cpu`, row by row: (source index (K, out) int64, weight
    (K, out) int32, is_copy), K = the most taps of any output (rows with fewer get zero-weight taps).

    A box resize reads 1-4 input pixels per output at 224, so a few gathers replace a dense (out x in) matmul.
    ``is_copy``: every output takes exactly one input pixel with weight 2**22 (any up-sampling), i.e. the pass only
    replicates pixels.
    """
    weights = _pil_box_weights_cpu(in_size, out_size)
    taps = max(1, int((weights != 0).sum(dim=1).max()))
    values, index = weights.topk(taps, dim=1)
    is_copy = taps == 1 and bool((values == 1 << _PIL_PRECISION_BITS).all())
    return index.T.contiguous().to(device), values.T.to(torch.int32).contiguous().to(device), is_copy


def _pil_box_axis(levels: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """One Pillow BOX pass along ``dim`` of int32 grey levels: weighted gathers summed, then Pillow's ``clip8``
    (add half, shift right 22 bits, clamp to 0..255). Products (< 255 * 2**22) and sums stay below 2**31, so int32
    is exact."""
    index, weight, is_copy = _pil_box_taps(levels.shape[dim], out_size, str(levels.device))
    if is_copy:
        return levels.index_select(dim, index[0])
    shape = [1] * levels.ndim
    shape[dim] = out_size
    out_shape = list(levels.shape)
    out_shape[dim] = out_size
    acc = None
    for k in range(index.shape[0]):
        if dim in (-1, levels.ndim - 1):  # along the last dim a gather beats index_select by ~2.5x on CPU
            tap = torch.gather(levels, dim, index[k].expand(out_shape))
        else:
            tap = levels.index_select(dim, index[k])
        tap.mul_(weight[k].view(shape))
        acc = tap if acc is None else acc.add_(tap)
    return acc.add_(1 << (_PIL_PRECISION_BITS - 1)).bitwise_right_shift_(_PIL_PRECISION_BITS).clamp_(0, 255)


@functools.lru_cache(maxsize=64)
def _nearest_exact_is_pil_box(in_h: int, in_w: int, height: int, width: int) -> bool:
    """Whether torch's ``nearest-exact`` up-sampling picks the same source pixels as Pillow's BOX up-sampling
    (both take the pixel under the output centre; checked once per size pair, as float rounding could differ)."""
    probe_rows = torch.arange(in_h, dtype=torch.float32).view(1, 1, in_h, 1).expand(1, 1, in_h, in_w)
    probe_cols = torch.arange(in_w, dtype=torch.float32).view(1, 1, 1, in_w).expand(1, 1, in_h, in_w)
    probe = torch.cat([probe_rows, probe_cols], dim=1)
    picked = F.interpolate(probe, size=(height, width), mode="nearest-exact").to(torch.int64)
    rows = _pil_box_taps(in_h, height, "cpu")[0][0]
    cols = _pil_box_taps(in_w, width, "cpu")[0][0]
    return bool(torch.equal(picked[0, 0, :, 0], rows) and torch.equal(picked[0, 1, 0, :], cols))


def pil_box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL ``resize((width, height), BOX)`` of grey levels (integers 0..255 in any dtype, shape (..., H, W)), same
    dtype out.

    Horizontal pass first, rounded to uint8 levels, then the vertical pass, as Pillow does (bit-exact), in int32.
    When both passes only replicate pixels (up-sampling) the result is one gather, and the values need not be
    levels.
    """
    in_h, in_w = levels.shape[-2:]
    rows, _, rows_copy = _pil_box_taps(in_h, height, str(levels.device))
    cols, _, cols_copy = _pil_box_taps(in_w, width, str(levels.device))
    if rows_copy and cols_copy:
        if levels.is_floating_point() and levels.ndim == 4 and _nearest_exact_is_pil_box(in_h, in_w, height, width):
            return F.interpolate(levels, size=(height, width), mode="nearest-exact")  # the fastest pixel copy
        picked = levels if height == in_h else levels.index_select(-2, rows[0])  # equal sizes: identity taps
        if width == in_w:
            return picked.clone() if picked is levels else picked
        return torch.gather(picked, -1, cols[0].expand(*picked.shape[:-1], width))  # beats index_select ~2x here
    out = levels.to(torch.int32)
    if width != in_w:
        out = _pil_box_axis(out, width, -1)
    if height != in_h:
        out = _pil_box_axis(out, height, -2)
    return out.to(levels.dtype)


def pixelate_size(height: int, width: int, severity: int) -> tuple[int, int]:
    """Intermediate (h, w) of pixelate: int(224 * f) at 224; elsewhere the block (1/f reference pixels) grows with
    s = min(H, W) / 224, i.e. int(H * f / s) by int(W * f / s)."""
    factor = PIXELATE_FACTOR[severity]
    short = min(height, width)
    # round() guards against 1-ulp errors turning an exact integer size into the one below it
    return (max(1, int(round(height * factor * REFERENCE_SIZE / short, 6))),
            max(1, int(round(width * factor * REFERENCE_SIZE / short, 6))))


def pixelate_levels(levels: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """:func:`pixelate` on uint8 grey levels (N, 3, H, W), uint8 out: the same box down-sampling, and the way back
    up copies bytes instead of floats (the engine's 8-bit path, ``Corruption.levels_fn``)."""
    height, width = levels.shape[-2:]
    small_h, small_w = pixelate_size(height, width, severity)

    def block(x: torch.Tensor, out: torch.Tensor) -> None:
        _pixelate_up(_pixelate_down(x, small_h, small_w), out)

    return map_chunks(block, levels, fills_out=True, chunk=_pixelate_chunk(levels))


@register_corruption("pixelate", category="digital", benchmark="imagenet_c", random=False, levels_fn=pixelate_levels,
                     params={s: {"factor": v, "size": int(REFERENCE_SIZE * v)} for s, v in PIXELATE_FACTOR.items()})
def pixelate(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Box down-sampling to int(224 f) and box up-sampling back (spec §3.14), bit-exact to PIL's BOX filter.

    Works on grey levels like the reference (its input is a uint8 PIL image): the input is rounded to levels, both
    resizes use Pillow's 22-bit fixed-point weights and uint8 rounding between passes, the output is on the level
    grid. Resolution: the block size scales with s = min(H, W) / 224 (see :func:`pixelate_size`).
    """
    height, width = images.shape[-2:]
    small_h, small_w = pixelate_size(height, width, severity)
    return map_chunks(lambda x, out: _pixelate_block(x, small_h, small_w, out), images, fills_out=True)


def _pixelate_block(images: torch.Tensor, small_h: int, small_w: int, out: torch.Tensor) -> None:
    levels = (images.to(work_dtype(images)) * 255.0).round_().clamp_(0.0, 255.0)
    if _int8_box_usable(levels, small_h, small_w):
        levels = levels.to(torch.uint8)
    _pixelate_up(_pixelate_down(levels, small_h, small_w), out)


def _pixelate_chunk(levels: torch.Tensor) -> int | None:
    """Images per block of uint8 ``levels`` on CPU for the int8 path: ~1 MiB of input (7 images at 224), whose
    int32 column sums are about as big; twice the float path's block, which spreads the dozen op dispatches of a
    block over more images (6-7 ran ~5% faster than 3 or 14 at severity 1)."""
    if levels.device.type == "cpu" and _int8_mm_available():
        return images_per_chunk(levels, bytes_per_value=2)
    return None


def _pixelate_down(levels: torch.Tensor, small_h: int, small_w: int) -> torch.Tensor:
    """Pillow's BOX down-sampling of grey levels (N, C, H, W) to (small_h, small_w): uint8 levels in and out through
    int8 products where :func:`_int8_box_usable`, else float levels out (in the input's work dtype)."""
    if levels.dtype == torch.uint8 and _int8_box_usable(levels, small_h, small_w):
        return _box_down_int8(levels, small_h, small_w)
    levels = levels.to(work_dtype(levels))
    height, width = levels.shape[-2:]
    device = str(levels.device)
    rows_plan = _box_sum_plan(height, small_h, device, levels.dtype)
    cols_plan = _box_sum_plan(width, small_w, device, levels.dtype)
    if rows_plan is not None and cols_plan is not None:
        return _box_down_exact(levels, rows_plan, cols_plan)
    return pil_box_resize(levels.to(torch.int32), small_h, small_w).to(levels.dtype)


def _pixelate_up(small: torch.Tensor, out: torch.Tensor) -> None:
    """Pillow's BOX up-sampling of grey levels ``small`` (uint8 from the int8 route, else float) into ``out``:
    levels / 255 for a float ``out``, the levels themselves for a uint8 one."""
    height, width = out.shape[-2:]
    small_h = small.shape[-2]
    device = str(small.device)
    rows, _, rows_copy = _pil_box_taps(small_h, height, device)
    if rows_copy and _pil_box_taps(small.shape[-1], width, device)[2]:
        # the way back up only replicates pixels: columns on the short image, then whole rows copied straight into
        # the output
        values = small.to(torch.uint8) if out.dtype == torch.uint8 else _unit(small, out)
        torch.index_select(pil_box_resize(values, small_h, width), -2, rows[0], out=out)
    else:
        grown = pil_box_resize(small.to(torch.int32), height, width)
        out.copy_(grown if out.dtype == torch.uint8 else _unit(grown, out))


def _unit(levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Grey levels (any dtype) as values in [0, 1]: levels / 255 in ``like``'s work dtype, in ``like``'s dtype."""
    return levels.to(work_dtype(like)).div_(255.0).to(like.dtype)


@functools.lru_cache(maxsize=1)
def _int8_mm_available() -> bool:
    """Whether this torch multiplies int8 matrices on CPU through oneDNN (``torch._int_mm``, torch >= 2.3): with VNNI
    ~3x faster than float32 products; without oneDNN torch falls back to plain loops, so the float path stays."""
    if not (hasattr(torch, "_int_mm") and torch.backends.mkldnn.is_available()):
        return False
    try:
        probe = torch.ones(32, 16, dtype=torch.int8)
        return bool(torch._int_mm(probe, probe.T.contiguous()).eq(16).all())
    except RuntimeError:
        return False


def _int8_box_usable(levels: torch.Tensor, small_h: int, small_w: int) -> bool:
    """Whether :func:`_box_down_int8` can shrink these images (once they are uint8) to (small_h, small_w)."""
    height, width = levels.shape[-2:]
    return (levels.device.type == "cpu" and small_h <= height and small_w <= width and levels.numel() > 0
            and _int8_mm_available())


@functools.lru_cache(maxsize=64)
def _box_int8_plan(in_size: int, out_size: int, centred: bool, pad_to: int = 1, blocks: int = 1
                   ) -> tuple[list[tuple[int, int, int, int, torch.Tensor]], torch.Tensor, torch.Tensor]:
    """Pillow's BOX down-sampling along one axis in exact integer arithmetic: (taps, weight (out,) int32, bias
    (out,) int32), taps = [(in_start, in_stop, out_start, out_stop, 0/1 int8 (out_stop - out_start,
    in_stop - in_start))], ``blocks`` consecutive runs of outputs, each with the inputs its boxes cover.

    An output's taps all carry Pillow's weight w = round(2**22 / count), so Pillow's accumulator is S * w with S
    the sum of the box. The input arrives centred (level - 128, int8), so the product gives S - 128 count;
    ``(S' * w + bias) >> 22`` with bias = 128 count w + 2**21 (Pillow's rounding half) is Pillow's clip8 result,
    minus 128 more when ``centred`` (the next product's input). |S' w| <= 2**29: no int32 overflow. Exact for any
    box count, unlike the float plan. ``pad_to``: zero outputs appended up to a multiple of it (oneDNN's int8
    kernels run ~1.7x faster at 89 -> 96 output columns); they come out 0 with weight and bias 0, and every run but
    the last is a multiple of it too. Runs skip the zeros of the dense matrix (two halve a pass's multiply-adds).
    """
    weights = _pil_box_weights_cpu(in_size, out_size)
    pad = -out_size % pad_to
    taps = F.pad((weights != 0).to(torch.int8), (0, 0, 0, pad))
    weight = weights.max(dim=1).values
    bias = 128 * (weights != 0).sum(dim=1) * weight + (1 << (_PIL_PRECISION_BITS - 1))
    bias -= (128 << _PIL_PRECISION_BITS) * centred
    step = (out_size + pad) / blocks / pad_to
    cuts = sorted({round(b * step) * pad_to for b in range(blocks + 1)})  # runs of whole multiples of pad_to
    runs = []
    for o0, o1 in zip(cuts[:-1], cuts[1:]):
        covered = taps[o0:o1].any(dim=0).nonzero()
        i0, i1 = (int(covered.min()), int(covered.max()) + 1) if len(covered) else (0, 1)
        runs.append((i0, i1, o0, o1, taps[o0:o1, i0:i1].contiguous()))
    return runs, F.pad(weight.to(torch.int32), (0, pad)), F.pad(bias.to(torch.int32), (0, pad))


def _box_down_int8(levels: torch.Tensor, small_h: int, small_w: int) -> torch.Tensor:
    """PIL BOX down-sampling of uint8 levels (N, C, H, W) on CPU, uint8 out, bit-exact: both passes are int8
    products with 0/1 box matrices (``torch._int_mm``), each followed by Pillow's fixed-point rounding.

    Columns: (planes * H, W) @ (W, w'), w' = w padded to a multiple of 16, in two runs of output columns, each
    rounded and laid out (H, planes, w') centred in int8. Rows: that (H, planes * w') under the (h, H) box matrix,
    in two runs of output rows (``_int_mm`` writes only whole contiguous outputs). Why: a dozen whole-block ops in
    place of float conversion, float products and row gathers; pixelate ran slower per core than Pillow itself.
    """
    n, c, height, width = levels.shape
    planes = n * c
    col_taps, col_weight, col_bias = _box_int8_plan(width, small_w, True, pad_to=16, blocks=2)
    row_taps, row_weight, row_bias = _box_int8_plan(height, small_h, False, blocks=2)
    padded_w = col_weight.shape[0]
    centred = levels.reshape(planes * height, width).bitwise_xor(128).view(torch.int8)  # x ^ 128 == x - 128 in int8
    wide = torch.empty(height, planes * padded_w, dtype=torch.int8)
    for i0, i1, o0, o1, taps in col_taps:
        sums = torch._int_mm(centred[:, i0:i1], taps.T)
        sums.mul_(col_weight[o0:o1]).add_(col_bias[o0:o1]).bitwise_right_shift_(_PIL_PRECISION_BITS)  # no int addcmul
        wide.view(height, planes, padded_w)[..., o0:o1].copy_(sums.view(planes, height, o1 - o0).transpose(0, 1))
    sums = torch.empty(small_h, planes * padded_w, dtype=torch.int32)
    for i0, i1, o0, o1, taps in row_taps:
        torch._int_mm(taps, wide[i0:i1], out=sums[o0:o1])
    sums.mul_(row_weight.view(-1, 1)).add_(row_bias.view(-1, 1)).bitwise_right_shift_(_PIL_PRECISION_BITS)
    small = torch.empty(planes, small_h, small_w, dtype=torch.uint8)
    small.copy_(sums.view(small_h, planes, padded_w)[..., :small_w].transpose(0, 1))
    return small.view(n, c, small_h, small_w)


_CPU_BOX_BLOCKS = 4  # column blocks of the box-sum product on CPU: 4x fewer multiply-adds than one dense product


@functools.lru_cache(maxsize=64)
def _box_sum_plan(in_size: int, out_size: int, device: str, dtype: torch.dtype):
    """Pillow's BOX down-sampling along one axis as exact float arithmetic, or None where that is not exact (the
    route on GPUs and on CPUs without oneDNN int8 products; elsewhere :func:`_box_down_int8`).

    Why: the int32 gathers of :func:`pil_box_resize` made pixelate slower per core than PIL itself. Down-sampling
    boxes tile the axis and every output's weights are equal, w = round(2**22 / count), so an output is
    floor(S * w / 2**22 + 0.5) with S the sum of its box: S is a product with a 0/1 matrix (exact: integers
    <= 255 * count, also in TF32/bf16 products), the scaling is exact in float32 when count is a power of two and
    never within rounding error of x.5 when count is odd (the distance is >= 1 / (2 count)). Other counts (6, 10,
    ...) return None. Returns (blocks, factor): blocks [(in_start, in_stop, out_start, out_stop, ones (in, out))]
    that split the 0/1 matrix block-diagonally at box boundaries (a few on CPU, cutting the multiply-adds;
    one on GPUs), factor (out,) = w / 2**22.
    """
    if out_size > in_size:
        return None
    weights = _pil_box_weights_cpu(in_size, out_size)
    taps = weights != 0
    counts = taps.sum(dim=1)
    if not all(c % 2 == 1 or c & (c - 1) == 0 for c in counts.tolist()):
        return None
    first = taps.to(torch.int8).argmax(dim=1).tolist()
    groups = _CPU_BOX_BLOCKS if device == "cpu" else 1
    cuts = sorted({round(g * out_size / groups) for g in range(groups)} | {out_size})
    blocks = []
    for o0, o1 in zip(cuts[:-1], cuts[1:]):
        i0, i1 = first[o0], first[o1] if o1 < out_size else in_size
        if taps[o0:o1].sum() != taps[o0:o1, i0:i1].sum():  # a box outside its block: not a tiling
            return None
        ones = taps[o0:o1, i0:i1].T.to(device=device, dtype=dtype).contiguous()
        blocks.append((i0, i1, o0, o1, ones))
    factor = (weights.max(dim=1).values / (1 << _PIL_PRECISION_BITS)).to(device=device, dtype=dtype)
    return blocks, factor


def _box_down_exact(levels: torch.Tensor, rows_plan, cols_plan) -> torch.Tensor:
    """PIL BOX down-sampling of float grey levels (N, C, H, W) with :func:`_box_sum_plan`'s plans: columns first,
    rounded to levels, then rows, as Pillow does; bit-exact. Autocast off: the sums must stay in full precision.

    Columns: block products with the 0/1 matrix. Rows: the k-th row of every box gathered at once (whole rows, a
    zero row kept after the last image row standing in for the taps shorter boxes lack) and added up.
    """
    n, c, height, width = levels.shape
    col_blocks, col_factor = cols_plan
    planes = n * c
    with torch.autocast(levels.device.type, enabled=False):
        flat = levels.reshape(-1, width)
        wide = levels.new_empty(planes * height + 1, col_factor.shape[0])
        wide[-1] = 0.0
        for i0, i1, o0, o1, ones in col_blocks:
            torch.mm(flat[:, i0:i1], ones, out=wide[:-1, o0:o1])
    torch.addcmul(_half(levels), wide, col_factor, out=wide).floor_()  # floor(0.5) keeps the zero row zero
    taps = _box_rows_index(height, rows_plan[1].shape[0], planes, str(levels.device))
    small = wide.index_select(0, taps[0])
    for index in taps[1:]:
        small += wide.index_select(0, index)
    small = small.view(planes, -1, wide.shape[-1])
    factor = rows_plan[1].view(-1, 1).expand(small.shape[1:]).contiguous()
    return torch.addcmul(_half(levels), small, factor, out=small).floor_().view(n, c, *small.shape[1:])


@functools.lru_cache(maxsize=64)
def _box_rows_index(in_size: int, out_size: int, planes: int, device: str) -> torch.Tensor:
    """For :func:`_box_down_exact`: (longest box, planes * out) row indices into the stacked (planes * in + 1, W)
    row table: row k of each output's box; where a box is shorter than k + 1, the table's last row (kept zero)."""
    taps = _pil_box_weights_cpu(in_size, out_size) != 0
    counts = taps.sum(dim=1)
    first = taps.to(torch.int8).argmax(dim=1)
    offset = torch.arange(int(counts.max())).view(-1, 1)
    rows = (first + offset).unsqueeze(1) + in_size * torch.arange(planes).view(1, -1, 1)
    rows = torch.where((offset < counts).unsqueeze(1), rows, planes * in_size)
    return rows.reshape(rows.shape[0], -1).to(device)


def _half(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(0.5, dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------------------------------------------------- JPEG


def _jpeg_codec(images: torch.Tensor, quality: int, levels: str,
                memory_format: torch.memory_format = torch.contiguous_format,
                affine: tuple[Sequence[float], Sequence[float]] | None = None) -> torch.Tensor:
    """JPEG encode + decode of every image with libjpeg (4:2:0, IJG tables: byte for byte what PIL writes) on CPU.

    ``levels`` says how floats become the uint8 image that is encoded: ``"truncate"`` (:func:`jpeg_round_trip`) or
    ``"round"`` (:func:`jpeg_compression`), see :func:`_to_levels`. Each image goes float -> interleaved levels ->
    JPEG -> decoded -> float in one pass while it is in cache, on a pool of torch's thread count (one contiguous span
    of images per thread). Levels and the float copies are numpy (torch's per-image op overhead and OpenMP teams on
    pool threads measured 2-6x slower at this size); encoder and decoder are torchvision's libjpeg calls, which
    release the GIL (Pillow's encoder holds it: two threads coded no faster than one). Images on another device
    are turned into levels there and come over as uint8. Returns float (N, 3, H, W) on the input's device and
    dtype, in ``memory_format`` (channels_last skips the HWC -> CHW copy for a channels_last model); ``affine``
    as in :func:`jpeg_round_trip`. uint8 images are taken as the levels themselves (float32 out).
    """
    n, _, height, width = images.shape
    last = memory_format == torch.channels_last
    out = empty_batch((n, height, width, 3) if last else (n, 3, height, width), torch.float32, "cpu")
    if n:
        if images.dtype == torch.uint8:  # the levels as they are: interleaved per image unless channels_last
            source, level_pixels = _host_levels(images)
        elif images.device.type == "cpu":
            source = (images if images.dtype in (torch.float32, torch.float64) else images.float()).detach().numpy()
            level_pixels = None
        else:  # (N, H, W, 3) uint8: levels and interleaving on the device, one copy over
            levels_nhwc = _to_levels_torch(images, levels).permute(0, 2, 3, 1).contiguous()
            source, level_pixels = None, levels_nhwc.cpu().numpy()
        kernels.map_spans(n, functools.partial(_jpeg_code_span, source=source, level_pixels=level_pixels,
                                               out=out.numpy(), quality=int(quality), levels=levels,
                                               channels_last=last, affine=affine))
    if last:
        out = out.permute(0, 3, 1, 2)
    return out.to(device=images.device, dtype=images.dtype if images.is_floating_point() else torch.float32)


def _host_levels(levels: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray | None]:
    """uint8 levels (N, 3, H, W) on the host for the codec: (planar NCHW, None), to be interleaved image by image
    (a batch-wide permute of uint8 costs 4x more), or (None, interleaved NHWC) where the memory is channels_last."""
    levels = levels.cpu()
    nhwc = levels.permute(0, 2, 3, 1)
    return (None, nhwc.numpy()) if nhwc.is_contiguous() else (levels.contiguous().numpy(), None)


def _interleave(planes: np.ndarray, pixels: np.ndarray) -> None:
    """(3, H, W) planes into interleaved (H, W, 3) ``pixels``, plane by plane (numpy's strided paths are slow
    otherwise)."""
    for c in range(3):
        pixels[..., c] = planes[c]


def jpeg_levels(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG encode + decode of uint8 levels (N, 3, H, W), uint8 out (channels_last memory, the decoder's own
    layout): :func:`_jpeg_codec` without the float conversions, for the engine's 8-bit path."""
    n, _, height, width = levels.shape
    out = torch.empty((n, height, width, 3), dtype=torch.uint8)
    if n:
        planar, interleaved = _host_levels(levels)
        decoded = out.numpy()
        code = _libjpeg_round_trip()

        def code_span(span: range) -> None:
            pixels = np.empty((height, width, 3), dtype=np.uint8)
            for i in span:
                if planar is not None:
                    _interleave(planar[i], pixels)
                decoded[i] = code(pixels if planar is not None else interleaved[i], int(quality))

        kernels.map_spans(n, code_span)
    return out.permute(0, 3, 1, 2).to(levels.device)


def _jpeg_code_span(span: range, source: np.ndarray | None, level_pixels: np.ndarray | None, out: np.ndarray,
                    quality: int, levels: str, channels_last: bool,
                    affine: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
    """Code images ``span`` of :func:`_jpeg_codec` into ``out`` (float32, NCHW or NHWC) one by one, reusing one
    set of buffers: levels from ``source`` (float CPU images, NCHW) or given (``level_pixels``, uint8 NHWC).

    The codec gets interleaved (H, W, 3) levels: planar ones cost torchvision's encoder a transposition that alone
    takes as long as the encoding (the bytes are the same either way).
    """
    if kernels.enabled():
        _jpeg_code_span_compiled(span, source, level_pixels, out, quality, levels, channels_last, affine)
        return
    code = _libjpeg_round_trip()
    height, width = out.shape[1:3] if channels_last else out.shape[2:]
    if affine is not None:  # float32 per-channel factors, shaped for the output's layout
        if channels_last:  # tiled to the full (H, W, 3) image: broadcasting along a last axis of 3 is ~7x slower
            scale, shift = (np.tile(np.asarray(v, dtype=np.float32), (height, width, 1)) for v in affine)
        else:
            scale, shift = (np.asarray(v, dtype=np.float32).reshape(3, 1, 1) for v in affine)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    planes = np.empty((3, height, width), dtype=np.uint8)
    scaled = None if source is None or source.dtype == np.uint8 else np.empty((3, height, width), dtype=source.dtype)
    for i in span:
        if source is None:
            pixels = level_pixels[i]
        elif source.dtype == np.uint8:
            _interleave(source[i], pixels)
        else:  # levels plane by plane, then interleaved plane by plane: numpy's strided paths are slow otherwise
            _to_levels(source[i], levels, scaled, planes)
            _interleave(planes, pixels)
        decoded = code(pixels, quality)
        np.divide(decoded if channels_last else decoded.transpose(2, 0, 1), np.float32(255.0), out=out[i],
                  dtype=np.float32)
        if affine is not None:
            np.multiply(out[i], scale, out=out[i])
            np.add(out[i], shift, out=out[i])


def _jpeg_code_span_compiled(span: range, source: np.ndarray | None, level_pixels: np.ndarray | None,
                             out: np.ndarray, quality: int, levels: str, channels_last: bool,
                             affine: tuple[Sequence[float], Sequence[float]] | None) -> None:
    """:func:`_jpeg_code_span` with its per-pixel steps compiled: float -> interleaved levels in one pass
    (:func:`levels_interleave_loop`), decoded levels -> floats through a per-channel table of the 256 values
    (:func:`levels_lookup_loop`, the table made by the same numpy ops as the uncompiled route: same bits)."""
    code = _libjpeg_round_trip()
    to_levels, lookup = kernels.compiled(levels_interleave_loop), kernels.compiled(levels_lookup_loop)
    table = _level_table(affine)
    height, width = out.shape[1:3] if channels_last else out.shape[2:]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    for i in span:
        if source is None:
            pixels = level_pixels[i]
        elif source.dtype == np.uint8:
            _interleave(source[i], pixels)
        else:
            to_levels(np.ascontiguousarray(source[i]), levels == "round", pixels)
        lookup(code(pixels, quality), table, out[i], channels_last)


def _level_table(affine: tuple[Sequence[float], Sequence[float]] | None) -> np.ndarray:
    """(3, 256) float32: what :func:`_jpeg_code_span` makes of grey level v in channel c (v / 255, then the
    ``affine`` scale and shift), by the same numpy ops."""
    table = np.empty((3, 256), dtype=np.float32)
    np.divide(np.arange(256, dtype=np.uint8), np.float32(255.0), out=table, dtype=np.float32)
    if affine is not None:
        scale, shift = (np.asarray(v, dtype=np.float32).reshape(3, 1) for v in affine)
        np.multiply(table, scale, out=table)
        np.add(table, shift, out=table)
    return table


def levels_interleave_loop(image, round_half_even, pixels):
    """One float image (3, H, W) -> interleaved uint8 levels (H, W, 3), as :func:`_to_levels_torch`: round(x * 255)
    in the image's dtype, or floor(x * 255 + 2**-10) in float64; clipped to 0..255 (NaN: 0). Compiled; a plane
    at a time, read in order (~2x faster than pixel by pixel)."""
    _, height, width = image.shape
    interleaved = pixels.reshape(-1)
    for c in range(3):
        plane = image[c].reshape(-1)
        for p in range(height * width):
            if round_half_even:
                v = np.float64(np.rint(plane[p] * plane.dtype.type(255.0)))
            else:  # truncation: the clipped value's integer part
                v = np.float64(plane[p]) * 255.0 + _TRUNCATE_TOLERANCE
            if not v > 0.0:
                v = 0.0
            elif v > 255.0:
                v = 255.0
            interleaved[3 * p + c] = np.uint8(v)


def levels_lookup_loop(levels, table, out, channels_last):
    """Decoded levels (H, W, 3) -> ``out`` (H, W, 3) or (3, H, W) float32: ``table[c, level]``. Compiled."""
    height, width, _ = levels.shape
    for h in range(height):
        for w in range(width):
            for c in range(3):
                if channels_last:
                    out[h, w, c] = table[c, levels[h, w, c]]
                else:
                    out[c, h, w] = table[c, levels[h, w, c]]


@functools.lru_cache(maxsize=1)
def _libjpeg_round_trip() -> Callable[[np.ndarray, int], np.ndarray]:
    """(H, W, 3) uint8 levels, quality -> the decoded JPEG, (H, W, 3) uint8. torchvision's codec where it has one
    (it releases the GIL, so the pool's threads code in parallel); else Pillow's, which writes the same bytes but
    holds the GIL while it encodes (torchvision deprecated its codec in 0.29 for TorchCodec)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg  # here: torchvision costs 2 s to import
    except ImportError:
        return _pil_jpeg_round_trip

    def code(pixels: np.ndarray, quality: int) -> np.ndarray:
        encoded = encode_jpeg(torch.from_numpy(pixels).permute(2, 0, 1), quality=quality)
        return decode_jpeg(encoded, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()
    return code


def _pil_jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """:func:`_libjpeg_round_trip` with Pillow's codec."""
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "JPEG", quality=quality)
    return np.asarray(Image.open(encoded).convert("RGB"))


def _to_levels(image: np.ndarray, levels: str, scaled: np.ndarray, pixels: np.ndarray) -> None:
    """One image's uint8 grey levels (3, H, W) into ``pixels``, value for value as
    :func:`_to_levels_torch`: ``"round"``: round(x * 255) half to even, ``"truncate"``: floor(x * 255 + 2**-10) as
    in float64; both clipped to 0..255 on the way into uint8, so the cast (truncation toward zero) drops only
    fractions.

    "truncate" runs in the image's dtype: in float32, z = fl(x * 255) + 2**-10 is exact (2**-10 is a multiple of
    the ulp below 2**14, and rounding at a power of two cannot cross an integer), so floor(z) misses the float64
    result only where fl(x * 255) rounded up onto a threshold k - 2**-10, i.e. where z is an integer. Those few
    pixels (about one per 224x224 image) are redone in float64.
    """
    np.multiply(image, scaled.dtype.type(255.0), out=scaled, dtype=scaled.dtype)
    if levels == "round":
        np.rint(scaled, out=scaled)
    else:
        np.add(scaled, scaled.dtype.type(_TRUNCATE_TOLERANCE), out=scaled)
    np.clip(scaled, 0.0, 255.0, out=pixels, casting="unsafe")
    if levels == "truncate" and scaled.dtype != np.float64:
        suspects = np.unravel_index(np.flatnonzero(scaled == pixels), pixels.shape)
        exact = np.floor(image[suspects].astype(np.float64) * 255.0 + _TRUNCATE_TOLERANCE)
        pixels[suspects] = np.clip(exact, 0.0, 255.0)


def _to_levels_torch(images: torch.Tensor, levels: str) -> torch.Tensor:
    """:func:`_to_levels` for a batch on any device, as uint8 (N, 3, H, W)."""
    if levels == "truncate":
        x = (images.to(torch.float64) * 255.0).add_(_TRUNCATE_TOLERANCE).floor_()
    else:
        x = (images.to(work_dtype(images)) * 255.0).round_()
    return x.clamp_(0.0, 255.0).to(torch.uint8)


def jpeg_round_trip(images: torch.Tensor, quality: int = 85,
                    memory_format: torch.memory_format = torch.contiguous_format,
                    affine: tuple[Sequence[float], Sequence[float]] | None = None) -> torch.Tensor:
    """The released-file step (spec §1.3): truncate to uint8 like ``np.uint8(x * 255)``, JPEG at ``quality``
    (baseline, 4:2:0, as PIL saves), decode; float [0, 1] on the input's device and dtype, in ``memory_format``
    (``torch.channels_last`` saves a copy when a channels_last model comes next). ``affine=(scale, shift)``
    (per channel) returns ``x * scale + shift`` of the decoded x instead: a model's normalisation, applied while
    each image is in cache rather than as one more pass over the batch.

    Truncation counts a value within 2**-10 of a grey level below it as that level (float32 rounding of values
    the float64 reference puts exactly on a level); otherwise it is plain truncation toward zero. uint8 images
    are taken as the grey levels themselves (the engine's 8-bit path; float32 out).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"jpeg_round_trip: expected (N, 3, H, W), got {tuple(images.shape)}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg_round_trip: quality must be 1-100, got {quality}")
    if affine is not None and (len(affine) != 2 or any(len(v) != 3 for v in affine)):
        raise ValueError(f"jpeg_round_trip: affine must be (scale, shift), 3 values each, got {affine}")
    return _jpeg_codec(images, quality, "truncate", memory_format, affine)


def jpeg_compression_levels(levels: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """:func:`jpeg_compression` on uint8 grey levels, uint8 out (``Corruption.levels_fn``)."""
    return jpeg_levels(levels, JPEG_QUALITY[severity])


@register_corruption("jpeg_compression", category="digital", benchmark="imagenet_c", random=False,
                     levels_fn=jpeg_compression_levels, params={s: {"quality": v} for s, v in JPEG_QUALITY.items()})
def jpeg_compression(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """JPEG encode/decode at quality 25, 18, 15, 10, 7 (spec §3.15), bit-identical to PIL (libjpeg on CPU).

    The clean input is rounded to grey levels (the reference encodes the uint8 image). JPEG works on fixed 8x8
    blocks, so the quality is used unchanged at every size.
    """
    return _jpeg_codec(images, JPEG_QUALITY[severity], "round")
