"""OpenCV operations re-implemented as batched torch ops, for the corruptions whose reference called OpenCV.

ImageNet-C's reference generator (MK224, the 2018 code; spec §2.2, §3.4, §3.8, §4.3) uses OpenCV in three places:
defocus blur builds its disk kernel with ``cv2.getGaussianKernel`` and a separable filter (spec §2.2), snow takes
the grey image with ``cv2.cvtColor(RGB2GRAY)`` (spec §3.8 step 7, trap 10), and spatter shapes its water droplets
with ``Canny``, a 5x5 chamfer ``distanceTransform``, ``equalizeHist`` and uint8 box (``cv2.blur``) and emboss
(``cv2.filter2D``) filters (spec §4.3). Calling OpenCV instead would add a heavy dependency, run on CPU only and one
image at a time; these ops take (N, C, H, W) tensors on any device and follow OpenCV's own semantics (integer and
fixed-point arithmetic, BORDER_REFLECT_101 by default, strict/non-strict comparisons), so they give OpenCV's
numbers. They are public so that each can be checked against OpenCV on its own (tests/test_corruptions_weather.py,
tests/test_corruptions_blur.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions.filters import border_indices, empty_batch, pad_images

CHAMFER_WEIGHTS = (1.0, 1.4, 2.1969)  # OpenCV DIST_L2 with a 5x5 mask: orthogonal, diagonal, knight move
_DIST_SHIFT = 16  # OpenCV 3.4/4.x compute chamfer distances in 16.16 fixed point


def _shifted(padded: torch.Tensor, dy: int, dx: int, pad: int, h: int, w: int) -> torch.Tensor:
    return padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]


def _reflect101(images: torch.Tensor, pad: int) -> torch.Tensor:
    """OpenCV's BORDER_REFLECT_101 (torch's "reflect" where it can), also on sides of 1 px, which OpenCV replicates
    and torch's "reflect" rejects."""
    return pad_images(images, pad, pad, pad, pad, "reflect101")


# ------------------------------------------------------------------------------------------------ colour and kernels


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(RGB2GRAY)`` weights 0.299/0.587/0.114 (spec §3.8 step 7, trap 10), keepdim (N, 1, H, W)."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def gaussian_kernel(ksize: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma, CV_32F): float64 exp, rounded to float32, renormalised (spec §2.2)."""
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) * 0.5
    taps = torch.exp((-0.5 / (sigma * sigma)) * x * x).to(torch.float32)
    return (taps.to(torch.float64) * (1.0 / taps.to(torch.float64).sum())).to(torch.float32)


def sep_filter2d_symmetric(array: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
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


def filter2d_reflect101(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D per channel (correlation, centred anchor, BORDER_REFLECT_101) of (N, C, H, W), direct conv."""
    n, c, h, w = images.shape
    kh, kw = kernel.shape
    padded = pad_images(images, kh // 2, kh // 2, kw // 2, kw // 2, "reflect101")
    weight = kernel.to(dtype=images.dtype, device=images.device).expand(c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=c)


def filter3x3(images: torch.Tensor, kernel) -> torch.Tensor:
    """``cv2.filter2D`` with a 3x3 kernel (nested sequences, correlation, centred anchor, BORDER_REFLECT_101) in the
    input dtype, as a sum of shifted copies that skips zero taps; not saturated (uint8 callers clamp)."""
    h, w = images.shape[-2:]
    padded = _reflect101(images, 1)
    return sum(kernel[dy + 1][dx + 1] * _shifted(padded, dy, dx, 1, h, w)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if kernel[dy + 1][dx + 1] != 0.0)


def box_sum3(images: torch.Tensor) -> torch.Tensor:
    """3×3 box sum with reflect-101 border, separable, in the input dtype: ``cv2.blur`` (ksize 3×3) is this / 9."""
    padded = _reflect101(images, 1)
    rows = padded[..., :-2, :] + padded[..., 1:-1, :] + padded[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


# --------------------------------------------------------------------------------------- edges and distances


def _dilate3(mask: torch.Tensor) -> torch.Tensor:
    """3×3 binary dilation of a bool (N, 1, H, W) mask (8-connectivity), nothing outside the image."""
    p = F.pad(mask, (1, 1, 1, 1), value=False)
    rows = p[..., :, :-2] | p[..., :, 1:-1] | p[..., :, 2:]
    return rows[..., :-2, :] | rows[..., 1:-1, :] | rows[..., 2:, :]


def canny_edges(gray8: torch.Tensor, low: float = 50.0, high: float = 150.0) -> torch.Tensor:
    """OpenCV ``Canny(img, low, high)`` (3×3 Sobel, L1 magnitude) on (N, 1, H, W) 0..255 integer values.

    Sobel with replicated border; non-maximum suppression in OpenCV's four sectors (tan 22.5° in 15-bit fixed
    point, integer arithmetic, strict/non-strict comparisons as OpenCV, zero magnitude outside the image);
    hysteresis by repeated 3×3 dilation of the strong edges into the weak candidates until nothing changes.
    Returns a bool mask.
    """
    h, w = gray8.shape[-2:]
    p = F.pad(gray8.to(torch.float32), (1, 1, 1, 1), mode="replicate")
    dx = p[..., :, 2:] - p[..., :, :-2]  # separable Sobel: derivative along one axis, [1, 2, 1] along the other
    dy = p[..., 2:, :] - p[..., :-2, :]
    gx = (dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :]).to(torch.int32)
    gy = (dy[..., :, :-2] + 2.0 * dy[..., :, 1:-1] + dy[..., :, 2:]).to(torch.int32)
    mag = gx.abs() + gy.abs()
    padded = F.pad(mag, (1, 1, 1, 1), value=0)

    def nb(oy: int, ox: int) -> torch.Tensor:
        return _shifted(padded, oy, ox, 1, h, w)

    ax, ay = gx.abs(), gy.abs() << 15
    tg22 = ax * 13573  # round(tan(22.5°) · 2^15)
    horizontal = ay < tg22
    vertical = ~horizontal & (ay > tg22 + (ax << 16))
    diagonal = ~horizontal & ~vertical
    same_sign = (gx < 0) == (gy < 0)
    keep = (
        (horizontal & (mag > nb(0, -1)) & (mag >= nb(0, 1)))
        | (vertical & (mag > nb(-1, 0)) & (mag >= nb(1, 0)))
        | (diagonal & same_sign & (mag > nb(-1, -1)) & (mag > nb(1, 1)))
        | (diagonal & ~same_sign & (mag > nb(-1, 1)) & (mag > nb(1, -1)))
    )
    weak = keep & (mag > math.floor(low))
    edges = weak & (mag > math.floor(high))
    for _ in range(h * w):
        grown = weak & _dilate3(edges)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def chamfer_distance(zero_mask: torch.Tensor, cap: float, fixed_point: bool = True) -> torch.Tensor:
    """min(cap, distance to the nearest True pixel) with OpenCV's 5×5 chamfer metric (DIST_L2, mask 5), float32.

    Moves cost 1 (orthogonal), 1.4 (diagonal), 2.1969 (knight), rounded to 16.16 fixed point as OpenCV 3.4/4.x
    (the 2018 generator's) do; ``fixed_point=False`` uses the float32 weights of OpenCV 5 (< 1e-4 apart). Paths
    stay inside the image. The distance is the cheapest path, whichever way it is computed: on CPU by OpenCV's
    own two raster passes (:func:`_chamfer_two_pass`, one step per row for all images at once), elsewhere by
    parallel relaxation (:func:`_chamfer_relaxation`, ≤ ceil(cap) + 1 rounds of the 16 moves).
    """
    if fixed_point:
        costs = tuple(round(wt * (1 << _DIST_SHIFT)) / (1 << _DIST_SHIFT) for wt in CHAMFER_WEIGHTS)
    else:
        costs = tuple(float(torch.tensor(wt, dtype=torch.float32)) for wt in CHAMFER_WEIGHTS)
    if zero_mask.device.type == "cpu":
        return _chamfer_two_pass(zero_mask, float(cap), *costs)
    return _chamfer_relaxation(zero_mask, float(cap), *costs)


def _chamfer_relaxation(zero_mask: torch.Tensor, cap: float, orth: float, diag: float, knight: float
                        ) -> torch.Tensor:
    """Parallel relaxation over the 16 moves: a distance below ``cap`` needs at most ``cap`` moves, so at most
    ceil(cap) + 1 rounds (fewer when nothing changes). float32 holds the fixed-point sums exactly."""
    moves = {orth: ((-1, 0), (1, 0), (0, -1), (0, 1)),
             diag: ((-1, -1), (-1, 1), (1, -1), (1, 1)),
             knight: ((-2, -1), (-2, 1), (2, -1), (2, 1), (-1, -2), (1, -2), (-1, 2), (1, 2))}
    h, w = zero_mask.shape[-2:]
    dist = torch.full(zero_mask.shape, cap, dtype=torch.float32, device=zero_mask.device).masked_fill_(zero_mask, 0.0)
    for _ in range(math.ceil(cap) + 1):
        relaxed = dist.clone()
        for cost, offsets in moves.items():
            padded = F.pad(dist, (2, 2, 2, 2), value=cap).add_(cost)
            for oy, ox in offsets:
                torch.minimum(relaxed, _shifted(padded, oy, ox, 2, h, w), out=relaxed)
        if torch.equal(relaxed, dist):
            break
        dist = relaxed
    return dist


def _chamfer_two_pass(zero_mask: torch.Tensor, cap: float, orth: float, diag: float, knight: float
                      ) -> torch.Tensor:
    """OpenCV's two raster passes, each row step done for every image (and column) at once.

    Forward (top to bottom): a row takes the best of the two rows above through the diagonal / vertical /
    knight moves, then the left-to-right sweep min(d[x], d[x-1] + orth), which is a running minimum:
    d[x] = min_{x' <= x} (d[x'] - orth·x') + orth·x. Backward mirrors it. Any cheapest path can be reordered into
    forward moves then backward moves without leaving the image (its moves lie in one octant), so two passes give
    exactly the cheapest path, i.e. the relaxation's result. Exact arithmetic: int32 in units of 2^-16 for the
    16.16 fixed-point costs, float64 otherwise. Rows are laid out (H, planes, W) so a row step reads one block.
    """
    h, w = zero_mask.shape[-2:]
    planes = zero_mask.reshape(-1, h, w)
    unit = float(1 << _DIST_SHIFT)
    fixed = all(float(c * unit).is_integer() for c in (cap, orth, diag, knight))
    if fixed:
        dtype, (cap, orth, diag, knight) = torch.int32, (int(c * unit) for c in (cap, orth, diag, knight))
    else:
        dtype = torch.float64
    dist = empty_batch((h + 4, planes.shape[0], w + 4), dtype, zero_mask.device).fill_(cap)
    dist[2:h + 2, :, 2:w + 2].masked_fill_(planes.transpose(0, 1), 0)
    ramp = torch.arange(w, device=zero_mask.device).to(dtype) * orth

    def relax_row(y: int, step: int) -> None:
        near, far = dist[y - step], dist[y - 2 * step]  # rows already final in this pass
        best = near[:, 2:w + 2] + orth
        torch.minimum(best, torch.minimum(near[:, 1:w + 1], near[:, 3:w + 3]).add_(diag), out=best)
        torch.minimum(best, torch.minimum(near[:, 0:w], near[:, 4:w + 4]).add_(knight), out=best)
        torch.minimum(best, torch.minimum(far[:, 1:w + 1], far[:, 3:w + 3]).add_(knight), out=best)
        row = dist[y, :, 2:w + 2]
        torch.minimum(best, row, out=best)
        if step > 0:  # left to right
            row.copy_(torch.cummin(best.sub_(ramp), dim=1).values.add_(ramp))
        else:  # right to left
            row.copy_(torch.cummin(best.add_(ramp).flip(1), dim=1).values.flip(1).sub_(ramp))

    for y in range(2, h + 2):
        relax_row(y, 1)
    for y in range(h + 1, 1, -1):
        relax_row(y, -1)
    out = empty_batch(zero_mask.shape, torch.float32, zero_mask.device)
    inner = out.view(-1, h, w).copy_(dist[2:h + 2, :, 2:w + 2].transpose(0, 1))
    if fixed:
        inner.div_(unit)  # multiples of 2^-16 below 2^8: exact in float32
    return out


def equalize_hist(gray8: torch.Tensor) -> torch.Tensor:
    """OpenCV ``equalizeHist`` per image on (N, 1, H, W) integer values 0..255 (float in, float out).

    LUT(v) = round(255 · (cdf(v) − h_first) / (total − h_first)) in float32 with half-to-even rounding, where
    h_first is the count of the lowest occupied bin (mapped to 0); a constant image is returned unchanged.
    """
    n = gray8.shape[0]
    flat = gray8.reshape(n, -1).to(torch.int64).clamp(0, 255)
    hist = torch.zeros(n, 256, dtype=torch.int64, device=gray8.device).scatter_add_(1, flat, torch.ones_like(flat))
    cdf = hist.cumsum(dim=1)
    first = (hist > 0).to(torch.int64).argmax(dim=1, keepdim=True)
    first_count = hist.gather(1, first)
    rest = flat.shape[1] - first_count
    scale = 255.0 / rest.clamp(min=1).to(torch.float32)
    lut = torch.round((cdf - first_count).to(torch.float32) * scale).clamp(0, 255)
    identity = torch.arange(256, device=gray8.device, dtype=torch.float32).expand(n, 256)
    lut = torch.where(rest == 0, identity, lut)
    return lut.gather(1, flat).view(gray8.shape).to(gray8.dtype)
