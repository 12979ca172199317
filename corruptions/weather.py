"""Weather corruptions of ImageNet-C: snow, frost, fog, brightness (spec §3.8-3.11) and the extra spatter (§4.3).

All five are batched torch ops on (N, 3, H, W) images in [0, 1]; every random draw of image i comes from
``seeds[i]`` through ``corruptions.rng`` (one ``stream`` per independent draw), so a result does not depend on
batch size, order or device. At 224x224 the parameters are MK224's; at other sizes the size-dependent ones scale
with s = min(H, W) / 224 (each docstring says which). The OpenCV stages that snow and spatter's water mode depend on
(grey conversion, Canny, chamfer distance transform, equalizeHist, uint8 box/emboss filters) are re-implemented in
:mod:`corruptions.cv`. Defined (so registered) in ImageNet-C's order, brightness after fog, then spatter.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from corruptions import cv, rng
from corruptions.common import REFERENCE_SIZE, size_scale, work_dtype
from corruptions.filters import (empty_batch, gaussian_filter, images_per_chunk, map_chunks, motion_blur, zoom_crop,
                                 zoom_geometry)
from corruptions.registry import register_corruption

# --------------------------------------------------------------------------------------------------- snow

SNOW_PARAMS = {  # spec §3.8: noise mean, noise std, zoom, threshold, blur radius, blur sigma, blend
    1: dict(mu=0.1, sigma=0.3, zoom=3.0, threshold=0.5, radius=10, blur_sigma=4, blend=0.8),
    2: dict(mu=0.2, sigma=0.3, zoom=2.0, threshold=0.5, radius=12, blur_sigma=4, blend=0.7),
    3: dict(mu=0.55, sigma=0.3, zoom=4.0, threshold=0.9, radius=12, blur_sigma=8, blend=0.7),
    4: dict(mu=0.55, sigma=0.3, zoom=4.5, threshold=0.85, radius=12, blur_sigma=8, blend=0.65),
    5: dict(mu=0.55, sigma=0.3, zoom=2.5, threshold=0.85, radius=12, blur_sigma=12, blend=0.55),
}


def snow_layer(seeds: torch.Tensor, height: int, width: int, severity: int, scale: float = 1.0,
               device=None) -> torch.Tensor:
    """The falling-snow layer (N, 1, H, W), multiples of 1/255 in float32 (spec §3.8 steps 2-6).

    N(μ, σ) noise, clipped_zoom (coarser grains), threshold, truncation to an 8-bit layer (MK224 writes it as
    a grayscale PNG), ImageMagick motion blur with its 8-bit quantisation at angle U(-135°, -45°). The noise is
    drawn for the centre crop that clipped_zoom keeps only (i.i.d. values, so the same distribution as MK224's
    full frame cut to that crop, at 1/zoom² of the draws) and zoomed in float32 (float64 changes none of the
    8-bit levels but a handful per million).
    """
    p = SNOW_PARAMS[severity]
    zoom = max(p["zoom"] * scale, 1.0)
    crop_h, crop_w = zoom_geometry(height, zoom)[0], zoom_geometry(width, zoom)[0]
    noise = rng.normal(seeds, (1, crop_h, crop_w), stream=0, dtype=torch.float64).to(device)
    layer = zoom_crop((noise * p["sigma"] + p["mu"]).to(torch.float32), height, width, zoom)
    layer = torch.where(layer < p["threshold"], torch.zeros_like(layer), layer)
    layer8 = torch.floor(255.0 * layer.clamp_(0.0, 1.0))
    angles = -135.0 + 90.0 * rng.uniform(seeds, (1,), stream=1, dtype=torch.float64).view(-1).to(layer.device)
    return motion_blur(layer8.div_(255.0), p["radius"] * scale, p["blur_sigma"] * scale, angles, quantize=True)


@register_corruption("snow", category="weather", benchmark="imagenet_c", random=True, params=SNOW_PARAMS)
def snow(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Falling snow: motion-blurred flakes added twice (layer + its 180° rotation) over a whitish haze (§3.8).

    Haze: x ← b·x + (1 − b)·max(x, 1.5·gray + 0.5) with OpenCV gray weights. Follows MK224 (8-bit truncated
    layer, ImageMagick quantisation); imagecorruptions blurs the unquantised float layer and rounds, a ≤ 1-2 grey
    level difference in the layer. Other sizes: zoom, blur radius and blur sigma × s (zoom at least 1). Runs in
    ~2 MiB blocks of images on CPU.
    """
    h, w = images.shape[-2:]
    scale = size_scale(images)
    blend = SNOW_PARAMS[severity]["blend"]

    def fall(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        flakes = snow_layer(block_seeds, h, w, severity, scale, block.device).to(block.dtype)
        haze = torch.maximum(block, cv.rgb_to_gray(block).mul_(1.5).add_(0.5)).mul_(1.0 - blend)
        haze.add_(block, alpha=blend).add_(flakes).add_(flakes.flip(dims=(-2, -1)))
        out.copy_(haze.clamp_(0.0, 1.0))

    return map_chunks(fall, images, seeds.to(images.device), fills_out=True)


# --------------------------------------------------------------------------------------------------- frost

FROST_PARAMS = {  # spec §3.9: (image weight a, frost weight f)
    1: dict(image_weight=1.0, frost_weight=0.4),
    2: dict(image_weight=0.8, frost_weight=0.6),
    3: dict(image_weight=0.7, frost_weight=0.7),
    4: dict(image_weight=0.65, frost_weight=0.7),
    5: dict(image_weight=0.6, frost_weight=0.75),
}
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # frost6 is never drawn
FROST_DIR_ENV = "RBIN_FROST_DIR"
FROST_PACKAGE = "imagecorruptions-imaug"

_frost_lock = threading.Lock()
_frost_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def frost_texture_dir() -> Path:
    """Folder with frost1.png … frost5.jpg: $RBIN_FROST_DIR, else the installed ``imagecorruptions`` package.

    The textures are the reference's own files (not redistributed here); the package is located without being
    imported (it pulls in OpenCV and numba).
    """
    env = os.environ.get(FROST_DIR_ENV)
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "frost" for p in spec.submodule_search_locations]
    for folder in candidates:
        if all((folder / name).is_file() for name in FROST_FILES):
            return folder
    raise FileNotFoundError(f"frost needs the ImageNet-C frost textures: pip install {FROST_PACKAGE} "
                            f"(or set {FROST_DIR_ENV} to a folder with {', '.join(FROST_FILES)})")


def _decoded_textures() -> list[torch.Tensor]:
    """The five textures as uint8 RGB (3, Hf, Wf) CPU tensors (PIL decodes them like cv2.imread, spec V17)."""
    key = ("decoded",)
    if key not in _frost_cache:
        folder = frost_texture_dir()
        _frost_cache[key] = [torch.from_numpy(np.asarray(Image.open(folder / name).convert("RGB")).copy())
                             .permute(2, 0, 1).contiguous() for name in FROST_FILES]
    return _frost_cache[key]


def frost_textures(height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(stack uint8 (5, 3, Hmax, Wmax), sizes int64 (5, 2)) of the textures ready to crop H×W on ``device``.

    At 224 (and whenever s = 1 and the image fits) the textures are the original pixels. At other sizes each is
    resized by max(s, H/Hf, W/Wf) (antialiased bilinear, rounded to uint8), so frost crystals keep their size
    relative to the image and every texture covers it. Cached per (device, H, W).
    """
    key = (str(torch.device(device)), height, width)
    with _frost_lock:
        if key in _frost_cache:
            return _frost_cache[key]
        scale = min(height, width) / REFERENCE_SIZE
        textures = []
        for tex in _decoded_textures():
            hf, wf = tex.shape[-2:]
            factor = max(scale, height / hf, width / wf)
            if factor != 1.0:
                size = (max(height, math.ceil(hf * factor - 1e-9)), max(width, math.ceil(wf * factor - 1e-9)))
                tex = F.interpolate(tex[None].float(), size=size, mode="bilinear", align_corners=False,
                                    antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
            textures.append(tex)
        hmax = max(t.shape[-2] for t in textures)
        wmax = max(t.shape[-1] for t in textures)
        stack = torch.zeros(len(textures), 3, hmax, wmax, dtype=torch.uint8)
        for i, tex in enumerate(textures):
            stack[i, :, :tex.shape[-2], :tex.shape[-1]] = tex
        sizes = torch.tensor([t.shape[-2:] for t in textures], dtype=torch.int64)
        _frost_cache[key] = (stack.to(device), sizes.to(device))
        return _frost_cache[key]


def frost_crop_positions(seeds: torch.Tensor, sizes: torch.Tensor, height: int, width: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image (texture index, top, left), each (N,) int64: randint(5), randint(0, Hf−H), randint(0, Wf−W).

    The upper bounds are exclusive as in numpy, so the last possible offset is never used (spec §3.9 step 3).
    """
    index = rng.randint(seeds, 0, len(FROST_FILES), stream=0).to(sizes.device)
    span = (sizes[index] - torch.tensor([height, width], device=sizes.device)).clamp(min=1).to(torch.float64)
    u = torch.stack([rng.uniform(seeds, (1,), stream=1, dtype=torch.float64).view(-1),
                     rng.uniform(seeds, (1,), stream=2, dtype=torch.float64).view(-1)], dim=1).to(sizes.device)
    offsets = torch.minimum(torch.floor(u * span), span - 1).to(torch.int64)
    return index, offsets[:, 0], offsets[:, 1]


@register_corruption("frost", category="weather", benchmark="imagenet_c", random=True, params=FROST_PARAMS)
def frost(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Frost on the lens: a·x + f·crop of one of five frost photographs (spec §3.9, MK224).

    Follows MK224: randint(5) over frost1…frost5 (frost2 ≡ frost3, so that texture is drawn 40 % of the time),
    crops of the original texture pixels, no rescale. imagecorruptions(-imaug) differs: it rescales every
    texture 1.1× (bicubic) and ICI also draws frost6 (randint(6)). Other sizes: textures rescaled by s (see
    :func:`frost_textures`).
    """
    h, w = images.shape[-2:]
    stack, sizes = frost_textures(h, w, images.device)
    p = FROST_PARAMS[severity]
    hmax, wmax = stack.shape[-2:]
    windows = stack.view(-1).unfold(0, w, 1)  # windows[j] = the w texture bytes from flat position j, a view
    planes = torch.arange(3, device=images.device).view(1, 3, 1)
    rows = torch.arange(h, device=images.device).view(1, 1, h)

    def frosted(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        n = block.shape[0]
        index, top, left = frost_crop_positions(block_seeds, sizes, h, w)
        # the crop is h rows of w bytes per channel: copy them as whole rows
        starts = ((index.view(n, 1, 1) * 3 + planes) * hmax + top.view(n, 1, 1) + rows) * wmax + left.view(n, 1, 1)
        crops = windows.index_select(0, starts.view(-1)).view(n, 3, h, w)
        blend = crops.to(block.dtype).mul_(p["frost_weight"] / 255.0).add_(block, alpha=p["image_weight"])
        out.copy_(blend.clamp_(0.0, 1.0))

    return map_chunks(frosted, images, seeds.to(images.device), fills_out=True)


# --------------------------------------------------------------------------------------------------- fog

# The fractal in float32: two uniforms per random word instead of one, half the memory; the map is resolved to ~1e-7
# of its range, far below an 8-bit level. Fog ran 25-30% faster per core than with float64 (3.1 -> 2.4 ms/image).
FOG_PLASMA_DTYPE = torch.float32
FOG_PARAMS = {  # spec §3.10: strength t, wibble decay d
    1: dict(strength=1.5, decay=2.0),
    2: dict(strength=2.0, decay=2.0),
    3: dict(strength=2.5, decay=1.7),
    4: dict(strength=2.5, decay=1.5),
    5: dict(strength=3.0, decay=1.4),
}


def next_power_of_two(x: int) -> int:
    return 1 if x <= 1 else 2 ** (int(x) - 1).bit_length()


def plasma_fractal(seeds: torch.Tensor, map_size: int = 256, decay: float = 2.0,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Diamond-square height maps on a torus, one per seed: (N, M, M) normalised to [0, 1] (spec §2.4).

    Per level (step = M … 2): square centres get the mean of their 4 corners, then the two diamond point sets
    the mean of 2 centres + 2 corners (wrapping via roll), each plus wib·U(−wib, wib) (amplitude wib²);
    wib starts at 100 and is divided by ``decay`` per level. Normalised over the whole map (min → 0, max → 1).
    The uniforms of level l (0 = coarsest) come from streams 3l (centres), 3l + 1 (top edges), 3l + 2 (left edges).
    """
    if map_size < 1 or map_size & (map_size - 1):
        raise ValueError(f"plasma map size must be a power of two, got {map_size}")
    n = seeds.shape[0]
    # the grid of the current level's corners, kept compact (the map is the final level's grid): (N, cells, cells)
    grid = torch.zeros(n, 1, 1, dtype=dtype, device=seeds.device)
    wib, level = 100.0, 0
    while grid.shape[-1] < map_size:
        cells = grid.shape[-1]

        def wibble(k: int) -> torch.Tensor:
            u = rng.uniform(seeds, (cells, cells), stream=3 * level + k, dtype=dtype)
            return u.mul_(2.0).sub_(1.0).mul_(wib * wib)

        square = grid + grid.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        centres = square.mul_(0.25).add_(wibble(0))
        top_edges = (centres + centres.roll(1, dims=1)).add_(grid).add_(grid.roll(-1, dims=2))
        top_edges.mul_(0.25).add_(wibble(1))
        left_edges = (centres + centres.roll(1, dims=2)).add_(grid).add_(grid.roll(-1, dims=1))
        left_edges.mul_(0.25).add_(wibble(2))
        even_rows = torch.stack([grid, top_edges], dim=-1).view(n, cells, 2 * cells)  # corner, top edge, ...
        odd_rows = torch.stack([left_edges, centres], dim=-1).view(n, cells, 2 * cells)  # left edge, centre, ...
        grid = torch.stack([even_rows, odd_rows], dim=2).view(n, 2 * cells, 2 * cells)
        wib, level = wib / decay, level + 1
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid.div_(grid.amax(dim=(1, 2), keepdim=True))


@register_corruption("fog", category="weather", benchmark="imagenet_c", random=True, params=FOG_PARAMS)
def fog(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Fog: add t·plasma fractal to every channel, then rescale by m/(m + t), m the image max (spec §3.10).

    The map is M×M with M the next power of two ≥ max(H, W) (256 at 224), normalised over the full map and
    cropped top-left, as the reference does; at other sizes the fractal therefore keeps its pixel scale. At least
    2×2: a 1×1 map has no range to normalise by (0/0, which came out black).
    """
    p = FOG_PARAMS[severity]
    h, w = images.shape[-2:]
    size, t = max(2, next_power_of_two(max(h, w))), p["strength"]

    def veil(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        plasma = plasma_fractal(block_seeds, size, p["decay"], dtype=FOG_PLASMA_DTYPE)[:, None, :h, :w]
        peak = block.amax(dim=(1, 2, 3), keepdim=True).to(torch.float64)
        gain = peak / (peak + t)  # (N, 1, 1, 1): x·m/(m+t) + t·P·m/(m+t)
        fogged = torch.add(block * gain.to(block.dtype), (plasma * (t * gain).to(plasma.dtype)).to(block.dtype))
        out.copy_(fogged.clamp_(0.0, 1.0))

    # 5x the default block (~10 MB): the plasma's coarse levels are many tiny ops, which larger blocks amortise
    # (measured best from 16 to 32 images at 224)
    return map_chunks(veil, images, seeds.to(images.device), fills_out=True, chunk=5 * images_per_chunk(images))


# --------------------------------------------------------------------------------------------------- brightness

BRIGHTNESS_SHIFT = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}  # §3.11: V <- clip(V + c, 0, 1)


@register_corruption("brightness", category="weather", benchmark="imagenet_c", random=False,
                     params={s: {"value_shift": v} for s, v in BRIGHTNESS_SHIFT.items()})
def brightness(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Raise the HSV value by c (spec §3.11) via the closed form of §2.6 (hue and saturation are unchanged, so
    every channel scales by V'/V; black becomes grey c); pointwise, so size-independent. float32, ~2 MiB blocks."""
    shift = BRIGHTNESS_SHIFT[severity]
    dtype = work_dtype(images)

    def brighten(block: torch.Tensor, out: torch.Tensor) -> None:
        x = block.to(dtype)
        value = x.amax(dim=1, keepdim=True)
        black = value <= 0
        gain = (value + shift).clamp_(max=1.0).div_(value.masked_fill(black, 1.0))
        out.copy_((x * gain).add_(black.to(dtype), alpha=shift).clamp_(0.0, 1.0))

    return map_chunks(brighten, images, fills_out=True)


# --------------------------------------------------------------------------------------------------- spatter

SPATTER_PARAMS = {  # spec §4.3: noise mean, noise std, blob sigma, threshold, k (water intensity / mud sigma)
    1: dict(mu=0.65, sigma=0.3, blob_sigma=4, threshold=0.69, intensity=0.6, mode="water"),
    2: dict(mu=0.65, sigma=0.3, blob_sigma=3, threshold=0.68, intensity=0.6, mode="water"),
    3: dict(mu=0.65, sigma=0.3, blob_sigma=2, threshold=0.68, intensity=0.5, mode="water"),
    4: dict(mu=0.65, sigma=0.3, blob_sigma=1, threshold=0.65, mud_sigma=1.5, mode="mud"),
    5: dict(mu=0.67, sigma=0.4, blob_sigma=1, threshold=0.65, mud_sigma=1.5, mode="mud"),
}
WATER_COLOR = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise, RGB
MUD_COLOR = (63 / 255.0, 42 / 255.0, 20 / 255.0)  # mud brown, RGB
WATER_DISTANCE_CAP = 20.0  # THRESH_TRUNC level of the distance map at 224
EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))  # the droplets' cv2.filter2D kernel


def water_layer(layer: torch.Tensor, intensity: float, distance_cap: float = WATER_DISTANCE_CAP) -> torch.Tensor:
    """Spatter's water-droplet intensity (N, 1, H, W) in [0, intensity] from the thresholded blob layer (§4.3).

    Mirrors the OpenCV pipeline with its uint8 steps: L8 = trunc(255·L); Canny(50, 150); chamfer distance to
    the droplet outlines, truncated at ``distance_cap``; 3×3 box mean, truncated; equalizeHist; emboss filter
    (saturated to 0..255); 3×3 box mean, rounded; W = L8 · D scaled to max ``intensity``. A frame without any
    droplet (max W = 0, where the reference divides 0 by 0) gives an all-zero layer.
    """
    layer8, edges = water_outlines(layer)
    return water_shading(layer8, cv.chamfer_distance(edges, distance_cap), intensity)


def water_outlines(layer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First stage of :func:`water_layer`: (L8 = trunc(255·L) as levels in L's dtype, Canny(50, 150) outlines)."""
    layer8 = torch.floor(255.0 * layer).clamp_(0.0, 255.0)
    return layer8, cv.canny_edges(layer8)


def water_shading(layer8: torch.Tensor, dist: torch.Tensor, intensity: float) -> torch.Tensor:
    """Last stage of :func:`water_layer`, from the truncated chamfer distances: box mean, equalizeHist, emboss, box
    mean, times L8, scaled to max ``intensity``. float32 throughout: every sum is of integers or of 16.16
    fixed-point distances and stays exact; the one rounding-sensitive product (the first mean's x 1/9) is float64.
    """
    dist = dist.to(torch.float32)
    mean = cv.box_sum3(dist).to(torch.float64).mul_(1.0 / 9.0).to(torch.float32).floor_()
    embossed = cv.filter3x3(cv.equalize_hist(mean), EMBOSS).clamp_(0.0, 255.0)  # uint8 saturation
    shade = cv.box_sum3(embossed).div_(9.0).round_()  # exact: no sum/9 lies near a half level
    wet = layer8.to(torch.float32).mul_(shade)
    peak = wet.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, wet / peak.clamp(min=1.0), torch.zeros_like(wet)).mul_(intensity)


def spatter_noise(seeds: torch.Tensor, height: int, width: int, severity: int, device=None) -> torch.Tensor:
    """The liquid layer's N(μ, σ) white noise, (N, 1, H, W) float64."""
    p = SPATTER_PARAMS[severity]
    return rng.normal(seeds, (1, height, width), stream=0, dtype=torch.float64).to(device) * p["sigma"] + p["mu"]


def spatter_layer(seeds: torch.Tensor, height: int, width: int, severity: int, scale: float = 1.0,
                  device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Thresholded blob layer (N, 1, H, W): N(μ, σ) noise, Gaussian(blob σ·s), values < thr set to 0.

    float64 by default (the noise of :func:`spatter_noise`; scikit-image's numbers to ~1e-15). ``dtype=float32``
    draws float32 normals (other values, same distribution, half the random bits) and blurs in float32, for
    callers that truncate the layer to 8 bits next.
    """
    p = SPATTER_PARAMS[severity]
    if dtype == torch.float64:
        noise = spatter_noise(seeds, height, width, severity, device)
    else:
        noise = rng.normal(seeds, (1, height, width), stream=0, dtype=dtype).to(device).mul_(p["sigma"]).add_(p["mu"])
    blobs = gaussian_filter(noise, p["blob_sigma"] * scale)
    return blobs.masked_fill_(blobs < p["threshold"], 0.0)


@register_corruption("spatter", category="weather", benchmark="imagenet_c_extra", random=True, params=SPATTER_PARAMS)
def spatter(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Water droplets (severities 1-3) or mud splashes (4-5) on the lens (spec §4.3).

    Water adds k·(droplet intensity)·pale turquoise, the droplet shading coming from the OpenCV-style pipeline
    of :func:`water_layer`; mud replaces the image by mud brown under a blurred blob mask (B = G_1.5(blobs),
    B < 0.8 → 0): x·(1 − B) + B·brown. Other sizes: blob σ, mud σ and the distance cap × s.
    """
    p = SPATTER_PARAMS[severity]
    h, w = images.shape[-2:]
    scale = size_scale(images)

    def mud(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        layer = spatter_layer(block_seeds, h, w, severity, scale, block.device)
        mask = gaussian_filter((layer > p["threshold"]).to(block.dtype), p["mud_sigma"] * scale)
        mask = mask.masked_fill_(mask < 0.8, 0.0)
        brown = block.new_tensor(MUD_COLOR).view(1, 3, 1, 1)
        out.copy_(torch.lerp(block, brown, mask).clamp_(0.0, 1.0))

    if p["mode"] == "mud":
        return map_chunks(mud, images, seeds.to(images.device), fills_out=True)

    # water, in three stages so that the chamfer distance's row-by-row passes run once for the whole batch
    n, device = images.shape[0], images.device
    seeds = seeds.to(device)
    layer8 = empty_batch((n, 1, h, w), torch.float32, device)
    edges = empty_batch((n, 1, h, w), torch.bool, device)
    chunk = images_per_chunk(images[:, :1])  # single-channel blocks
    for start in range(0, n, chunk):
        layer = spatter_layer(seeds[start:start + chunk], h, w, severity, scale, device, dtype=torch.float32)
        layer8[start:start + chunk], edges[start:start + chunk] = water_outlines(layer)
    dist = cv.chamfer_distance(edges, WATER_DISTANCE_CAP * scale)

    def shade(block: torch.Tensor, block_levels: torch.Tensor, block_dist: torch.Tensor, out: torch.Tensor) -> None:
        wet = water_shading(block_levels, block_dist, p["intensity"]).to(block.dtype)
        out.copy_(wet.mul(block.new_tensor(WATER_COLOR).view(1, 3, 1, 1)).add_(block).clamp_(0.0, 1.0))

    return map_chunks(shade, images, layer8, dist, fills_out=True)
