"""ImageNet-C-bar (Mintun, Kirillov & Xie, NeurIPS 2021): ten corruptions chosen to be unlike ImageNet-C's.

Re-implemented as batched torch ops from the original generator, facebookresearch/augmentation-corruption:
transforms in ``imagenet_c_bar/corrupt.py``, the released severities in ``imagenet_c_bar/imagenet_c_bar.csv``
(:data:`LEVELS`), Perlin noise in ``experiments/overlap/augmentations/utils/noise.py``. The original maps severity
1-5 to a level on its own 0-10 scale and most parameters are level x maximum / 10 (:func:`level_parameter`). It works
on uint8 values: an intensity I there adds I / 255 here (the catalogue shows the original's 0-255 numbers).

Resolution: the original's positions and lengths are for 224x224 crops. Here a pixel centre i sits at the reference
position (i + 0.5) / s - 0.5, s = min(H, W) / 224 (:func:`reference_grid`): at 224 these are the original's pixel
indices, elsewhere every pattern keeps its size relative to the image. The two Fourier noises use the original's
own ``im_size`` rule instead (frequencies in cycles per image, see :func:`fourier_noise`).

Randomness: every draw of image i comes from ``seeds[i]`` (``corruptions.rng``), not numpy's streams, so the
corruptions agree with the original in distribution. Each corruption is ``render_*(images, level, params)`` applied
to ``draw_*(seeds, ...)``; the tests feed the numpy re-run's draws (``benchmarks/cbar_reference.py``) to the render
functions and compare pixels. Category ``cbar``: results and training augmentation select by category, and these
are held-out test shifts that must not mix into ImageNet-C's noise/blur/weather/digital means or augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions import rng
from corruptions.common import size_scale, work_dtype
from corruptions.filters import gaussian_filter, map_chunks
from corruptions.registry import register_corruption

# imagenet_c_bar/imagenet_c_bar.csv: the level (0-10 scale) of severities 1-5
LEVELS = {
    "blue_noise_sample": (0.8, 1.6, 2.4, 4.0, 5.6),
    "brownish_noise": (1.0, 2.0, 3.0, 4.0, 5.0),
    "caustic_refraction": (2.35, 3.2, 4.9, 6.6, 9.15),
    "checkerboard_cutout": (2.0, 3.0, 4.0, 5.0, 6.0),
    "cocentric_sine_waves": (3.0, 5.0, 8.0, 9.0, 10.0),
    "inverse_sparkles": (1.0, 2.0, 4.0, 9.0, 10.0),
    "perlin_noise": (4.6, 5.2, 5.8, 7.6, 8.8),
    "plasma_noise": (4.75, 7.0, 8.5, 9.25, 10.0),
    "single_frequency_greyscale": (1.0, 1.5, 2.0, 4.5, 5.0),
    "sparkles": (1.0, 2.0, 3.0, 5.0, 6.0),
}
REFERENCE_SIZE = 224
MAX_RAYS = 199  # sparkles draw randint(50, 200) rays
MAX_CELLS = 41  # checkerboard grid side int(4 * 224 // scale) <= 40 for scale >= 22.4
GREY = 128 / 255  # checkerboard_cutout's fill
CAUSTIC_ETA = 4.0


def level_parameter(level: float, maxval: float) -> float:
    """corrupt.py's ``float_parameter``: level / 10 of the parameter's maximum."""
    return float(level) * maxval / 10.0


def _level(name: str, severity: int) -> float:
    return LEVELS[name][severity - 1]


def _params(name: str, **derived) -> dict[int, dict]:
    """Catalogue parameters: the released level and what the original derives from it (``derived``: level -> value)."""
    return {s: {"level": lv, **{k: round(f(lv), 6) for k, f in derived.items()}}
            for s, lv in enumerate(LEVELS[name], start=1)}


def reference_grid(images: torch.Tensor, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in 224-reference units: rows (H, 1), cols (1, W), (i + 0.5) / s - 0.5 with s = min(H, W) / 224,
    so that at 224 they are the original's integer pixel indices."""
    h, w = images.shape[-2:]
    s = size_scale(images) or 1.0
    dtype = dtype or work_dtype(images)

    def axis(n: int) -> torch.Tensor:
        return ((torch.arange(n, device=images.device, dtype=torch.float64) + 0.5) / s - 0.5).to(dtype)

    return axis(h).view(h, 1), axis(w).view(1, w)


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) parameters as (N, 1, 1) in ``like``'s dtype and device, to broadcast over (N, H, W) maps."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1)


def per_image_map(fn, values: torch.Tensor) -> torch.Tensor:
    """``fn(values)`` for a transcendental ``fn`` on per-image scalars (N,), independent of N.

    Why: torch's CPU kernels run SIMD code on whole vectors and a scalar libm loop on the tail, and the two can
    differ in the last bit, so image i's sin(angle) would depend on where i falls in its batch. Padding to a
    multiple of 64 sends every element through the SIMD path."""
    n = values.shape[0]
    padded = values.new_zeros(max(64, -(-n // 64) * 64))
    padded[:n] = values
    return fn(padded)[:n]


def _finish(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.clamp_(0.0, 1.0).to(images.dtype)


# ---------------------------------------------------------------------- blue_noise_sample, brownish_noise

def fourier_phases(seeds: torch.Tensor, channels: int, height: int, width: int, stream: int) -> torch.Tensor:
    """(N, C, H, W) phases as gen_noise arranges them: U(0, 2 pi) on the left W // 2 columns, for odd W a middle
    column (U(0, 2 pi) on its first H // 2 entries, 0, the same reversed; cut to H), then the left block rotated
    by 180 degrees. For the original's square sizes exactly its layout; other shapes follow the same rule."""
    left = 2.0 * math.pi * rng.uniform(seeds, (channels, height, width // 2), stream=stream, dtype=torch.float64)
    parts = [left]
    if width % 2:
        centre = 2.0 * math.pi * rng.uniform(seeds, (channels, height // 2), stream=stream + 1, dtype=torch.float64)
        zero = centre.new_zeros(*centre.shape[:-1], 1)
        parts.append(torch.cat([centre, zero, centre.flip(-1)], dim=-1)[..., :height].unsqueeze(-1))
    parts.append(left.flip(-1).flip(-2))
    return torch.cat(parts, dim=-1)


def fourier_noise(phases: torch.Tensor, brown: bool, dtype: torch.dtype) -> torch.Tensor:
    """Re(ifft2(power e^(i phase))), each plane scaled to unit (population) std; planes with std 0 become 0.

    power(row, col) = r (blue) or 1 / (r² + 1) (brownish), r the distance of (row, col) from (H / 2, W / 2) with
    rows scaled by m / H and columns by m / W, m = min(H, W) (cycles per shorter side; the identity for the
    original's square images); the array is rolled by (H // 2, W // 2) first, as the original. Frequencies are per
    image at every size, the original's own ``im_size`` rule: brownish noise keeps its look, blue noise its
    pixel-scale grain."""
    h, w = phases.shape[-2:]
    if phases.numel() == 0:  # an empty batch (the FFT library refuses zero transforms)
        return phases.to(dtype)
    m = float(min(h, w))
    rows = (torch.arange(h, device=phases.device, dtype=dtype) - h / 2).view(h, 1) * (m / h)
    cols = (torch.arange(w, device=phases.device, dtype=dtype) - w / 2).view(1, w) * (m / w)
    radius2 = rows * rows + cols * cols
    power = 1.0 / (radius2 + 1.0) if brown else torch.sqrt(radius2)
    phases = phases.to(dtype)
    spectrum = torch.roll(torch.polar(power.expand_as(phases).contiguous(), phases), (h // 2, w // 2), dims=(-2, -1))
    noise = torch.fft.ifft2(spectrum).real
    std = noise.std(dim=(-2, -1), correction=0, keepdim=True)
    return torch.where(std > 0, noise / torch.where(std > 0, std, 1.0), 0.0)


def draw_blue_noise_sample(seeds: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    return {"phases": fourier_phases(seeds, 1, height, width, stream=0)}


def render_blue_noise_sample(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """x where the unit-std blue noise exceeds level x 0.3 - 2.5, black elsewhere (all channels)."""
    x = images.to(work_dtype(images))
    noise = fourier_noise(params["phases"].to(x.device), brown=False, dtype=x.dtype)
    return _finish(x * (noise > level_parameter(level, 3.0) - 2.5), images)


@register_corruption("blue_noise_sample", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("blue_noise_sample", threshold=lambda lv: level_parameter(lv, 3.0) - 2.5))
def blue_noise_sample(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Pixels dropped to black where a blue-noise field (power growing with frequency: fine, evenly spread
    grain) falls below a threshold; about 1 % of the pixels at severity 1, 21 % at 5 (corrupt.py
    ``BlueNoiseSample``)."""
    h, w = images.shape[-2:]
    return render_blue_noise_sample(images, _level("blue_noise_sample", severity),
                                    draw_blue_noise_sample(seeds, h, w))


def draw_brownish_noise(seeds: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    return {"phases": fourier_phases(seeds, 3, height, width, stream=0)}


def render_brownish_noise(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """x + I n_c, one unit-std field per channel, I = level x 6.4 / 255."""
    x = images.to(work_dtype(images))
    noise = fourier_noise(params["phases"].to(x.device), brown=True, dtype=x.dtype)
    return _finish(x + level_parameter(level, 64) / 255.0 * noise, images)


@register_corruption("brownish_noise", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("brownish_noise", intensity=lambda lv: level_parameter(lv, 64)))
def brownish_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Smooth coloured blotches: per channel a noise field with a 1 / (f² + 1) power spectrum, added with amplitude
    level x 6.4 grey levels per unit std (corrupt.py ``BrownishNoise``)."""
    h, w = images.shape[-2:]
    return render_brownish_noise(images, _level("brownish_noise", severity), draw_brownish_noise(seeds, h, w))


# ------------------------------------------------------------------------------------- caustic_refraction

def draw_caustic_refraction(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """time U(0.5, 2), size U(0.75, 1.25) x 224 (the caustic pattern's period in reference pixels)."""
    u = rng.uniform(seeds, (2,), stream=0, dtype=torch.float64)
    return {"time": 0.5 + 1.5 * u[:, 0], "size": (0.75 + 0.5 * u[:, 1]) * REFERENCE_SIZE}


# p = frac(position / size) * 2 pi - 250 enters the iteration only through sines and cosines, so it is iterated as
# p + 80 pi (values near 0 instead of -250: float32 keeps its precision); the length term uses p itself.
_CAUSTIC_SHIFT = 80.0 * math.pi - 250.0


def caustic_pattern(images: torch.Tensor, time: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """The original's caustic "water surface" (N, H, W) in [0, 1]: five rounds of a trigonometric iteration."""
    rows, cols = reference_grid(images)
    dtype = rows.dtype
    size, time = _per_image(size, rows), _per_image(time, rows)
    q0 = torch.remainder(rows / size, 1.0) * 6.28318530718  # frac(point / size) * 2 pi, rows then cols
    q1 = torch.remainder(cols / size, 1.0) * 6.28318530718
    p0, p1 = (q0 - 250.0) * 0.005, (q1 - 250.0) * 0.005  # p * inten
    i0, i1 = q0 + _CAUSTIC_SHIFT, q1 + _CAUSTIC_SHIFT
    c = torch.ones(q0.shape[0], *rows.shape[:1], cols.shape[1], dtype=dtype, device=rows.device)
    for n in range(5):
        t = time * (1.0 - 3.5 / (n + 1))
        i0, i1 = (q0 + _CAUSTIC_SHIFT + torch.cos(t - i0) + torch.sin(t + i1),
                  q1 + _CAUSTIC_SHIFT + torch.sin(t - i1) + torch.cos(t + i0))
        c += torch.rsqrt((p0 / torch.sin(i0 + t)) ** 2 + (p1 / torch.cos(i1 + t)) ** 2)
    c = 1.17 - (c / 5.0) ** 1.4
    return (c.abs() ** 8.0).clamp_(0.0, 1.0)


def _zero_padded_differences(surface: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(surface[y + step, x] - surface[y - step, x], surface[y, x + step] - surface[y, x - step]), 0 outside."""
    h, w = surface.shape[-2:]
    padded = F.pad(surface, (step, step, step, step))
    vertical = padded[..., 2 * step:, step:step + w] - padded[..., :h, step:step + w]
    horizontal = padded[..., step:step + h, 2 * step:] - padded[..., step:step + h, :w]
    return vertical, horizontal


def bilinear_zeros(images: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of (N, C, H, W) at pixel positions (py, px) (N, H, W); neighbours outside count as 0
    (the original's ``utils/image.py`` bilinear_interpolation)."""
    n, c, h, w = images.shape
    flat = images.reshape(n, c, h * w)
    top, left = torch.floor(py), torch.floor(px)
    wy, wx = (py - top).unsqueeze(1), (px - left).unsqueeze(1)
    out = torch.zeros_like(images)
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        r, q = top + dy, left + dx
        inside = ((r >= 0) & (r < h) & (q >= 0) & (q < w)).unsqueeze(1)
        index = (r.clamp(0, h - 1) * w + q.clamp(0, w - 1)).to(torch.int64).view(n, 1, h * w).expand(n, c, h * w)
        out += torch.gather(flat, 2, index).view(n, c, h, w) * torch.where(inside, weight, 0.0)
    return out


def render_caustic_refraction(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """Look through a caustic water surface: refract, bilinear sample, add the surface's lighting.

    Surface: :func:`caustic_pattern`, Gaussian-softened (sigma 1 reference pixel, scipy ``reflect``). Its gradient
    (g_row, g_col) by central differences with 0 outside the image (as the original's ``luma_at_offset``) tilts the
    normal n = (g_row, g_col, 1) / |.|; the view ray (0, 0, 1) refracted with eta = 4 leaves, in closed form, along
    n_xy (cos(out angle) - n_z / eta) (the original builds and inverts a rotation matrix per pixel; straight when
    n_z >= 0.999). Times lens_scale = level x 11.2 reference pixels, rounded to 1e-3 as the original. Lighting adds
    level x 0.2 x (g_row - g_col). Other sizes: differences over d = max(1, round(s)) pixels, scaled to reference
    pixels, shifts x s."""
    x = images.to(work_dtype(images))
    s = size_scale(images) or 1.0
    step = max(1, round(s))
    surface = gaussian_filter(caustic_pattern(x, params["time"], params["size"]).unsqueeze(1), s, mode="reflect")
    g_row, g_col = (d.squeeze(1) * (s / step) for d in _zero_padded_differences(surface, step))
    norm2 = 1.0 + g_row * g_row + g_col * g_col
    nz = torch.rsqrt(norm2)
    sin2 = 1.0 - nz * nz  # sin² of the angle between the normal and the view ray
    bend = torch.sqrt((1.0 - sin2 / CAUSTIC_ETA ** 2).clamp_min(0.0)) - nz / CAUSTIC_ETA
    bend = torch.where(nz >= 1.0 - 1e-3, 0.0, bend) * nz * level_parameter(level, 0.5 * REFERENCE_SIZE)
    shift_row, shift_col = torch.round(g_row * bend, decimals=3), torch.round(g_col * bend, decimals=3)
    h, w = x.shape[-2:]
    py = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1) + s * shift_row
    px = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w) + s * shift_col
    lighting = level_parameter(level, 2.0) * (g_row - g_col)
    return _finish(bilinear_zeros(x, py, px).add_(lighting.unsqueeze(1)), images)


@register_corruption("caustic_refraction", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("caustic_refraction", lens_scale=lambda lv: level_parameter(lv, 0.5 * 224),
                                    lighting=lambda lv: level_parameter(lv, 2.0)))
def caustic_refraction(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """The image seen through a rippled water surface with its caustic light pattern: a procedural caustic map
    refracts the view (displacement grows with level x 11.2 reference pixels) and lights it (corrupt.py
    ``CausticRefraction``)."""
    return render_caustic_refraction(images, _level("caustic_refraction", severity), draw_caustic_refraction(seeds))


# ------------------------------------------------------------------------------------ checkerboard_cutout

def draw_checkerboard_cutout(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """angle U(0, 2 pi), cell size max(U(0.1, 0.25) x 224, 1), grid values U(0, 1) (N, 41, 41) of which the
    original's (cells, cells) block is used, cells = floor(4 x 224 / size)."""
    u = rng.uniform(seeds, (2,), stream=0, dtype=torch.float64)
    scale = ((0.1 + 0.15 * u[:, 1]) * REFERENCE_SIZE).clamp_min(1.0)
    cells = torch.div(4.0 * REFERENCE_SIZE, scale, rounding_mode="floor").to(torch.int64)
    grid = rng.uniform(seeds, (MAX_CELLS, MAX_CELLS), stream=1, dtype=torch.float64)
    return {"angle": 2.0 * math.pi * u[:, 0], "scale": scale, "cells": cells, "grid": grid}


def render_checkerboard_cutout(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """Grey 128 where the rotated checkerboard's cell has the "cut" colour (floor(u) and floor(v) of equal parity)
    and its grid value is below level / 10. As the original, the grid is indexed by int() (truncation toward 0)
    with negative indices wrapping, so cells on both sides of u = 0 (or v = 0) share a grid value. Positions in
    float64: cell boundaries are then the original's, pixel for pixel. In ~2 MiB blocks of images (per-pixel maps in
    float64 and int64 for a whole batch would stream from memory: 3x slower on CPU)."""
    angle = params["angle"].to(images.device)
    cos_a, sin_a = per_image_map(torch.cos, angle), per_image_map(torch.sin, angle)
    per_image = (cos_a, sin_a, params["scale"].to(images.device), params["cells"].to(images.device).view(-1),
                 params["grid"].to(images.device))
    return map_chunks(lambda x, *p, out: _checkerboard_block(x, level, *p, out), images, *per_image,
                      fills_out=True)


def _checkerboard_block(images: torch.Tensor, level: float, cos_a: torch.Tensor, sin_a: torch.Tensor,
                        scale: torch.Tensor, cells: torch.Tensor, grid: torch.Tensor, out: torch.Tensor) -> None:
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images, torch.float64)
    n = x.shape[0]
    scale = scale.view(-1, 1, 1)
    u = (cos_a.view(-1, 1, 1) * rows + sin_a.view(-1, 1, 1) * cols).div_(scale)
    v = (-sin_a.view(-1, 1, 1) * rows + cos_a.view(-1, 1, 1) * cols).div_(scale)
    same = torch.remainder(torch.floor(u).add_(torch.floor(v)), 2.0) == 0.0  # floors of equal parity
    cells = cells.view(-1, 1, 1)
    index = torch.remainder(torch.trunc(u).to(torch.int64), cells).mul_(grid.shape[-1])
    index += torch.remainder(torch.trunc(v).to(torch.int64), cells)
    picked = torch.gather(grid.reshape(n, MAX_CELLS * MAX_CELLS), 1, index.view(n, -1)).view_as(u)
    cut = (same & (picked < level_parameter(level, 1.0))).unsqueeze(1)
    out.copy_(_finish(torch.where(cut, GREY, x), images))


@register_corruption("checkerboard_cutout", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("checkerboard_cutout", fraction=lambda lv: level_parameter(lv, 1.0)))
def checkerboard_cutout(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A randomly rotated checkerboard (cells 22-56 reference pixels) whose cells of one colour are filled with
    grey 128 with probability level / 10 (corrupt.py ``CheckerBoardCutOut``)."""
    return render_checkerboard_cutout(images, _level("checkerboard_cutout", severity),
                                      draw_checkerboard_cutout(seeds))


# ----------------------------------------------------------------------------------- cocentric_sine_waves

def draw_cocentric_sine_waves(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """offset (N, 2) U(0, 224) as (col, row); freq U(0, 10); amplitude, ring_width U(0, 22.4)."""
    u = rng.uniform(seeds, (5,), stream=0, dtype=torch.float64)
    size = float(REFERENCE_SIZE)
    return {"offset": size * u[:, :2], "freq": 10.0 * u[:, 2], "amplitude": size / 10 * u[:, 3],
            "ring_width": size / 10 * u[:, 4]}


def render_cocentric_sine_waves(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """x + I ((r + a sin(freq atan2(dx, dy))) mod w / w - 1/2): sawtooth rings around the offset, I = level x 12.8."""
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    offset = params["offset"].to(x.device)
    dx, dy = cols - _per_image(offset[:, 0], x), rows - _per_image(offset[:, 1], x)
    width = _per_image(params["ring_width"], x)
    radius = torch.sqrt(dx * dx + dy * dy) + torch.sin(torch.atan2(dx, dy) * _per_image(params["freq"], x)) \
        * _per_image(params["amplitude"], x)
    rings = torch.remainder(radius, width) / width - 0.5
    return _finish(x + level_parameter(level, 128) / 255.0 * rings.unsqueeze(1), images)


@register_corruption("cocentric_sine_waves", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("cocentric_sine_waves", intensity=lambda lv: level_parameter(lv, 128)))
def cocentric_sine_waves(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Concentric grey rings (a sawtooth of the distance, wobbled by a sine of the angle) around a random centre,
    amplitude level x 12.8 grey levels (corrupt.py ``CocentricSineWaves``; the release's spelling). Centre, ring
    width and wobble are in 224-reference pixels."""
    return render_cocentric_sine_waves(images, _level("cocentric_sine_waves", severity),
                                       draw_cocentric_sine_waves(seeds))


# -------------------------------------------------------------- inverse_sparkles (and the sparkle kernel)

def sparkle_weight(rows: torch.Tensor, cols: torch.Tensor, center: torch.Tensor, lengths: torch.Tensor,
                   rays: torch.Tensor, exponent: float) -> torch.Tensor:
    """The sparkle kernel's blend weight (N, H, W) of one star per image: ``center`` (N, 2) as (row, col),
    ``lengths`` (N, R) ray lengths of which the first ``rays`` (N,) are used, all in reference pixels.

    At angle index d = (atan2(dcol, drow) + pi) / 2 pi x rays, with i = floor(d), f = d - i: the ray length L is
    interpolated between rays i and i + 1 (cyclic); weight = clip((1 - (f - 1/2)²) (L² / (r² + 1e-4))^exponent)."""
    drow, dcol = rows - _per_image(center[:, 0], rows), cols - _per_image(center[:, 1], cols)
    n = drow.shape[0]
    count = rays.to(device=rows.device).view(-1, 1, 1)
    d = (torch.atan2(dcol, drow) + math.pi) / (2.0 * math.pi) * count.to(rows.dtype)
    index = torch.floor(d)
    f = d - index
    index = index.to(torch.int64)
    table = lengths.to(device=rows.device, dtype=rows.dtype)
    pixels = rows.shape[0] * cols.shape[1]
    first = torch.gather(table, 1, torch.remainder(index, count).view(n, pixels)).view_as(f)
    second = torch.gather(table, 1, torch.remainder(index + 1, count).view(n, pixels)).view_as(f)
    length = first + f * (second - first)
    gain = length * length / (drow * drow + dcol * dcol + 1e-4)
    if exponent != 1.0:
        gain = gain ** exponent
    return ((1.0 - (f - 0.5) ** 2) * gain).clamp_(0.0, 1.0)


def draw_inverse_sparkles(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """One star: centre U(0.25, 0.75) x 224 (N, 2) as (row, col), randint(50, 200) rays, lengths 56 (1 + 0.25 z)."""
    center = (0.25 + 0.5 * rng.uniform(seeds, (2,), stream=0, dtype=torch.float64)) * REFERENCE_SIZE
    radius = 0.25 * REFERENCE_SIZE
    z = rng.normal(seeds, (MAX_RAYS,), stream=2, dtype=torch.float64)
    return {"center": center, "rays": rng.randint(seeds, 50, 200, stream=1), "lengths": radius + 0.25 * radius * z}


def render_inverse_sparkles(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """1 + w (x - 1): the image survives inside the star, white elsewhere; exponent (100 - amount) / 50 = level x
    0.13, amount = 100 - level x 6.5."""
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    amount = 100.0 - level_parameter(level, 65)
    weight = sparkle_weight(rows, cols, params["center"], params["lengths"], params["rays"], (100.0 - amount) / 50.0)
    return _finish(x + (1.0 - weight.unsqueeze(1)) * (1.0 - x), images)  # = 1 + w (x - 1), exact where w = 1


@register_corruption("inverse_sparkles", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("inverse_sparkles", amount=lambda lv: 100 - level_parameter(lv, 65)))
def inverse_sparkles(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """The image washed to white except inside one large star-burst (radius 56 reference pixels) near the centre;
    the wash reaches further in as the level grows (corrupt.py ``InverseSparkles``)."""
    return render_inverse_sparkles(images, _level("inverse_sparkles", severity), draw_inverse_sparkles(seeds))


# ------------------------------------------------------------------------------------------- perlin_noise

def draw_perlin_noise(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """Perlin tables per image: a permutation of 0..255 (N, 256) and 256 unit gradients (N, 256, 2).

    The original's gradients are (k0, k1) / 256 with k uniform integers in [-256, 256), normalised; its table of 514
    entries repeats the first 256 (p[k] = p[k mod 256], g likewise). A (0, 0) draw (probability 2^-18 per entry)
    would make the original's gradient NaN; here it becomes (1, 0). The permutation is uniform (argsort of uniforms)
    where the original swaps each entry with one drawn from all 256, a slightly non-uniform shuffle."""
    perm = torch.argsort(rng.uniform(seeds, (256,), stream=0, dtype=torch.float64), dim=1)
    ints = rng.randint(seeds, -256, 256, (256, 2), stream=1).to(torch.float64)
    norm = ints.norm(dim=2, keepdim=True)
    unit = torch.tensor([1.0, 0.0], dtype=torch.float64, device=ints.device)
    grad = torch.where(norm > 0, ints / norm.clamp_min(1.0), unit)
    return {"perm": perm, "grad": grad}


def _lattice(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cell mod 256, cell + 1 mod 256, fraction) of lattice coordinates v: the original adds 16 x 256 to v, which
    changes neither for v > -4096 and makes its int() a floor."""
    cell = torch.floor(v)
    index = torch.remainder(cell.to(torch.int64), 256)
    return index, torch.remainder(index + 1, 256), v - cell


def perlin_noise2(perm: torch.Tensor, grad_perm: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Ken Perlin's 2002-era ``noise2`` as in the original generator, per image: ``perm`` (N, 256), ``grad_perm``
    (N, 256, 2) = grad[perm] (the corner hash p[p[bx] + by] then reads grad_perm[(p[bx] + by) mod 256]); x (H, 1)
    are the rows' lattice coordinates (the original's first argument), y (1, W) the columns'. Returns (N, H, W)."""
    n, h, w = perm.shape[0], x.shape[0], y.shape[1]
    bx0, bx1, rx0 = _lattice(x.view(-1))
    by0, by1, ry0 = _lattice(y.view(-1))
    rx0, ry0 = rx0.view(1, h, 1), ry0.view(1, 1, w)
    rx1, ry1 = rx0 - 1.0, ry0 - 1.0
    sx, sy = rx0 * rx0 * (3.0 - 2.0 * rx0), ry0 * ry0 * (3.0 - 2.0 * ry0)

    def corner(bx: torch.Tensor, by: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
        hashed = torch.remainder(perm[:, bx].view(n, h, 1) + by.view(1, 1, w), 256).view(n, h * w, 1)
        g = torch.gather(grad_perm, 1, hashed.expand(n, h * w, 2)).view(n, h, w, 2)
        return rx * g[..., 0] + ry * g[..., 1]

    u, v = corner(bx0, by0, rx0, ry0), corner(bx1, by0, rx1, ry0)
    a = u + sx * (v - u)
    u, v = corner(bx0, by1, rx0, ry1), corner(bx1, by1, rx1, ry1)
    b = u + sx * (v - u)
    return 1.5 * (a + sy * (b - a))


def render_perlin_noise(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """(1 - alpha) x + alpha clip(turbulence / 2 + 1/2), turbulence = sum over f = 1, 2, 4, 8, 16 of
    |noise2(f row / 32, f col / 32)| / f, alpha = level x 0.05."""
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    perm = params["perm"].to(x.device)
    grad_perm = torch.gather(params["grad"].to(device=x.device, dtype=x.dtype), 1,
                             perm.unsqueeze(-1).expand(*perm.shape, 2))
    turbulence = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device, dtype=x.dtype)
    for f in (1.0, 2.0, 4.0, 8.0, 16.0):
        turbulence += perlin_noise2(perm, grad_perm, rows * (f / 32), cols * (f / 32)).abs_() / f
    alpha = level_parameter(level, 0.5)
    noise = (0.5 * turbulence + 0.5).clamp_(0.0, 1.0).unsqueeze(1)
    return _finish((1.0 - alpha) * x + alpha * noise, images)


@register_corruption("perlin_noise", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("perlin_noise", alpha=lambda lv: level_parameter(lv, 0.5)))
def perlin_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A grey Perlin turbulence cloud (five octaves, base period 32 reference pixels) blended in with weight level x
    0.05 (corrupt.py ``PerlinNoise``)."""
    return render_perlin_noise(images, _level("perlin_noise", severity), draw_perlin_noise(seeds))


# ------------------------------------------------------------------------------------------- plasma_noise

def draw_plasma_noise(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """time U(0, 6 pi), iterations randint(4, 7), sharpness U(0.5, 1), scale U(0.075, 0.2) x 224."""
    u = rng.uniform(seeds, (4,), stream=0, dtype=torch.float64)
    return {"time": 6.0 * math.pi * u[:, 0], "iterations": 4 + torch.floor(3.0 * u[:, 1]).to(torch.int64),
            "sharpness": 0.5 + 0.5 * u[:, 2], "scale": (0.075 + 0.125 * u[:, 3]) * REFERENCE_SIZE}


def render_plasma_noise(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """(1 - I) x + I (sin(X - t), sin((X + Y + sin t) / 2), sin(Y + t)), (X, Y) the warped coordinates.

    The original's warp state i = (i0, i1, i2, i3) starts at (1, 1, 1, 0) and is only ever multiplied, so i3 stays 0;
    i0, i1, i2 are the powers 1.93^k, 1.15^k, (2.25 - sharpness)^k. In float32 the result is the float64
    original's to within one grey level (0.03 % of the values)."""
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    n = x.shape[0]
    scale, t = _per_image(params["scale"], rows), _per_image(params["time"], rows)
    iterations = params["iterations"].to(x.device).view(-1, 1, 1)
    damping, gain = 2.25 - _per_image(params["sharpness"], rows), torch.ones_like(t)
    px, py = (cols / scale).expand(n, *x.shape[-2:]), (rows / scale).expand(n, *x.shape[-2:])
    for k in range(int(iterations.max()) if n else 0):
        shift = t / 1.15 ** k
        ra = torch.cos(py * 1.93 ** k + shift) / gain
        rb = torch.sin(px * 1.93 ** k + shift) / gain
        gain = gain * damping  # (2.25 - sharpness)^k by products, as the original (no per-image pow)
        active = k < iterations
        px = torch.where(active, px + (ra - 0.3 * rb), px)
        py = torch.where(active, py + (rb + 0.3 * ra), py)
    sin_t = per_image_map(torch.sin, params["time"].to(x.device)).to(x.dtype).view(-1, 1, 1)
    noise = torch.stack([torch.sin(px - t), torch.sin((px + py + sin_t) * 0.5), torch.sin(py + t)], dim=1)
    intensity = level_parameter(level, 64) / 255.0
    return _finish((1.0 - intensity) * x + intensity * noise, images)


@register_corruption("plasma_noise", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("plasma_noise", intensity=lambda lv: level_parameter(lv, 64)))
def plasma_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A coloured procedural plasma (an iterated sine warp of the coordinates) blended in with weight level x
    6.4 / 255, the image dimmed by the same weight (corrupt.py ``PlasmaNoise``). Its scale is in 224-reference
    pixels."""
    return render_plasma_noise(images, _level("plasma_noise", severity), draw_plasma_noise(seeds))


# ----------------------------------------------------------------------------- single_frequency_greyscale

def draw_single_frequency_greyscale(seeds: torch.Tensor) -> dict[str, torch.Tensor]:
    """freq (N, 2): U(-pi, pi) and U(-|that|, |that|) in random order; phase (N,): U(0, 2 pi)."""
    u = rng.uniform(seeds, (4,), stream=0, dtype=torch.float64)
    magnitude = math.pi * (2.0 * u[:, 0] - 1.0)
    other = magnitude.abs() * (2.0 * u[:, 1] - 1.0)
    swap = u[:, 2] < 0.5  # np.random.permutation(2)
    freq = torch.stack([torch.where(swap, other, magnitude), torch.where(swap, magnitude, other)], dim=1)
    return {"freq": freq, "phase": 2.0 * math.pi * u[:, 3]}


def render_single_frequency_greyscale(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """x + I sin(f0 col + f1 row + phase) on every channel, I = level x 19.6 / 255."""
    x = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    freq = params["freq"].to(x.device)
    wave = torch.sin(cols * _per_image(freq[:, 0], x) + rows * _per_image(freq[:, 1], x)
                     + _per_image(params["phase"], x))
    return _finish(x + level_parameter(level, 196) / 255.0 * wave.unsqueeze(1), images)


@register_corruption("single_frequency_greyscale", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("single_frequency_greyscale", intensity=lambda lv: level_parameter(lv, 196)))
def single_frequency_greyscale(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """One grey 2-D sinusoid of random frequency (up to 1/2 cycle per pixel at 224), direction and phase added to
    the image, amplitude level x 19.6 grey levels (corrupt.py ``SingleFrequencyGreyscale``). Frequencies are per
    224-reference pixel, so the stripes keep their count per image at other sizes."""
    level = _level("single_frequency_greyscale", severity)
    return render_single_frequency_greyscale(images, level, draw_single_frequency_greyscale(seeds))


# ----------------------------------------------------------------------------------------------- sparkles

def draw_sparkles(seeds: torch.Tensor, radius: float) -> dict[str, torch.Tensor]:
    """Five stars: centres U(0, 224) (N, 5, 2) as (row, col), randint(50, 200) rays each, ray lengths
    max(1, radius (1 + 0.25 z)) with z standard normal (N, 5, 199)."""
    centers = float(REFERENCE_SIZE) * rng.uniform(seeds, (5, 2), stream=0, dtype=torch.float64)
    rays = rng.randint(seeds, 50, 200, (5,), stream=1)
    z = rng.normal(seeds, (5, MAX_RAYS), stream=2, dtype=torch.float64)
    return {"centers": centers, "rays": rays, "lengths": (radius + 0.25 * radius * z).clamp_min(1.0)}


def render_sparkles(images: torch.Tensor, level: float, params: dict) -> torch.Tensor:
    """Each star in turn whitens the previous result by its weight: x <- x + w (1 - x) (amount 50: exponent 1)."""
    out = images.to(work_dtype(images))
    rows, cols = reference_grid(images)
    for k in range(params["centers"].shape[1]):
        weight = sparkle_weight(rows, cols, params["centers"][:, k], params["lengths"][:, k], params["rays"][:, k], 1.0)
        out = out + weight.unsqueeze(1) * (1.0 - out)
    return _finish(out, images)


@register_corruption("sparkles", category="cbar", benchmark="imagenet_c_bar", random=True,
                     params=_params("sparkles", radius=lambda lv: level_parameter(lv, 0.1) * 224))
def sparkles(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Five white star-bursts (50-199 jittered rays, a 1/r² glow) at random positions, radius level x 2.24
    reference pixels (corrupt.py ``Sparkles``)."""
    level = _level("sparkles", severity)
    return render_sparkles(images, level, draw_sparkles(seeds, level_parameter(level, 0.1) * REFERENCE_SIZE))
