"""Weather corruptions of ImageNet-C: snow, frost, fog (spec §3.8-3.10) and the extra spatter (§4.3).

All four are batched torch ops on (N, 3, H, W) images in [0, 1]; every random draw of image i comes from
``seeds[i]`` through ``corruptions.rng`` (one ``stream`` per independent draw), so a result does not depend on
batch size, order or device. At 224x224 the parameters are MK224's; at other sizes the size-dependent ones scale
with s = min(H, W) / 224 (each docstring says which). Spatter's water mode re-implements the OpenCV stages it
depends on (Canny, 5x5 chamfer distance transform, equalizeHist, uint8 box/emboss filters) in torch, following
OpenCV's integer semantics; they are public here so they can be checked against OpenCV on their own.
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

from corruptions import rng
from corruptions.filters import (empty_batch, gaussian_filter, images_per_chunk, map_chunks, motion_blur, zoom_crop,
                                 zoom_geometry)
from corruptions.registry import register_corruption

REFERENCE_SIZE = 224


def size_scale(images: torch.Tensor) -> float:
    """s = min(H, W) / 224: how much the size-dependent parameters grow or shrink at other resolutions."""
    return min(images.shape[-2:]) / REFERENCE_SIZE


def _gray(images: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB2GRAY weights 0.299/0.587/0.114 (spec §3.8 step 7, trap 10), keepdim (N, 1, H, W)."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


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


@register_corruption("snow", category="weather", random=True, params=SNOW_PARAMS)
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
        haze = torch.maximum(block, _gray(block).mul_(1.5).add_(0.5)).mul_(1.0 - blend)
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


@register_corruption("frost", category="weather", random=True, params=FROST_PARAMS)
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


@register_corruption("fog", category="weather", random=True, params=FOG_PARAMS)
def fog(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Fog: add t·plasma fractal to every channel, then rescale by m/(m + t), m the image max (spec §3.10).

    The map is M×M with M the next power of two ≥ max(H, W) (256 at 224), normalised over the full map and
    cropped top-left, as the reference does; at other sizes the fractal therefore keeps its pixel scale.
    """
    p = FOG_PARAMS[severity]
    h, w = images.shape[-2:]
    size, t = next_power_of_two(max(h, w)), p["strength"]

    def veil(block: torch.Tensor, block_seeds: torch.Tensor, out: torch.Tensor) -> None:
        plasma = plasma_fractal(block_seeds, size, p["decay"])[:, None, :h, :w]
        peak = block.amax(dim=(1, 2, 3), keepdim=True).to(torch.float64)
        gain = peak / (peak + t)  # (N, 1, 1, 1): x·m/(m+t) + t·P·m/(m+t), the plasma term in float64
        fogged = torch.add(block * gain.to(block.dtype), (plasma * (t * gain)).to(block.dtype))
        out.copy_(fogged.clamp_(0.0, 1.0))

    # 5x the default block (~10 MB): the plasma's coarse levels are many tiny ops, which larger blocks amortise
    # (measured best from 16 to 32 images at 224)
    return map_chunks(veil, images, seeds.to(images.device), fills_out=True, chunk=5 * images_per_chunk(images))


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
CHAMFER_WEIGHTS = (1.0, 1.4, 2.1969)  # OpenCV DIST_L2 with a 5x5 mask: orthogonal, diagonal, knight move
_DIST_SHIFT = 16  # OpenCV 3.4/4.x compute chamfer distances in 16.16 fixed point
_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))


def _shifted(padded: torch.Tensor, dy: int, dx: int, pad: int, h: int, w: int) -> torch.Tensor:
    return padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]


def _reflect101(images: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(images, (pad, pad, pad, pad), mode="reflect")  # torch's reflect = OpenCV BORDER_REFLECT_101


def box_mean3(images: torch.Tensor) -> torch.Tensor:
    """cv2.blur(ksize 3×3) mean with OpenCV's default reflect-101 border, float64 sum times 1/9."""
    padded = _reflect101(images.to(torch.float64), 1)
    h, w = images.shape[-2:]
    total = sum(_shifted(padded, dy, dx, 1, h, w) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    return total * (1.0 / 9.0)


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


def water_layer(layer: torch.Tensor, intensity: float, distance_cap: float = WATER_DISTANCE_CAP) -> torch.Tensor:
    """Spatter's water-droplet intensity (N, 1, H, W) in [0, intensity] from the thresholded blob layer (§4.3).

    Mirrors the OpenCV pipeline with its uint8 steps: L8 = trunc(255·L); Canny(50, 150); chamfer distance to
    the droplet outlines, truncated at ``distance_cap``; 3×3 box mean, truncated; equalizeHist; emboss filter
    (saturated to 0..255); 3×3 box mean, rounded; W = L8 · D scaled to max ``intensity``. A frame without any
    droplet (max W = 0, where the reference divides 0 by 0) gives an all-zero layer.
    """
    layer8, edges = water_outlines(layer)
    return water_shading(layer8, chamfer_distance(edges, distance_cap), intensity)


def water_outlines(layer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First stage of :func:`water_layer`: (L8 = trunc(255·L) as levels in L's dtype, Canny(50, 150) outlines)."""
    layer8 = torch.floor(255.0 * layer).clamp_(0.0, 255.0)
    return layer8, canny_edges(layer8)


def water_shading(layer8: torch.Tensor, dist: torch.Tensor, intensity: float) -> torch.Tensor:
    """Last stage of :func:`water_layer`, from the truncated chamfer distances: box mean, equalizeHist, emboss, box
    mean, times L8, scaled to max ``intensity``. float32 throughout: every sum is of integers or of 16.16
    fixed-point distances and stays exact; the one rounding-sensitive product (the first mean's x 1/9) is float64.
    """
    h, w = dist.shape[-2:]
    dist = dist.to(torch.float32)
    mean = _box_sum3(dist).to(torch.float64).mul_(1.0 / 9.0).to(torch.float32).floor_()
    levels = _reflect101(equalize_hist(mean), 1)
    embossed = sum(_EMBOSS[dy + 1][dx + 1] * _shifted(levels, dy, dx, 1, h, w)
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1) if _EMBOSS[dy + 1][dx + 1] != 0.0)
    shade = _box_sum3(embossed.clamp_(0.0, 255.0)).div_(9.0).round_()  # exact: no sum/9 lies near a half level
    wet = layer8.to(torch.float32).mul_(shade)
    peak = wet.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, wet / peak.clamp(min=1.0), torch.zeros_like(wet)).mul_(intensity)


def _box_sum3(images: torch.Tensor) -> torch.Tensor:
    """3×3 box sum with reflect-101 border, separable, in the input dtype."""
    padded = _reflect101(images, 1)
    rows = padded[..., :-2, :] + padded[..., 1:-1, :] + padded[..., 2:, :]
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


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


@register_corruption("spatter", category="weather", random=True, params=SPATTER_PARAMS)
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
    dist = chamfer_distance(edges, WATER_DISTANCE_CAP * scale)

    def shade(block: torch.Tensor, block_levels: torch.Tensor, block_dist: torch.Tensor, out: torch.Tensor) -> None:
        wet = water_shading(block_levels, block_dist, p["intensity"]).to(block.dtype)
        out.copy_(wet.mul(block.new_tensor(WATER_COLOR).view(1, 3, 1, 1)).add_(block).clamp_(0.0, 1.0))

    return map_chunks(shade, images, layer8, dist, fills_out=True)
