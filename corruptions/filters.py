"""Filter building blocks shared by the blur and weather corruptions (ImageNet-C spec §2.1, §2.3, §2.5).

Each op reproduces the semantics of the library the reference generator called (scipy/scikit-image Gaussian,
scipy ``zoom`` inside ``clipped_zoom``, ImageMagick's motion blur) as batched torch code: (N, C, H, W) tensors,
any C, any device, no loop over images. Border handling is done by gathering with folded/clamped indices rather
than ``F.pad``, because scipy's half-sample ``reflect`` is not torch's mirror type and kernels may be longer
than the image (elastic_transform, spec §3.13).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from corruptions import kernels
from corruptions.common import work_dtype

BORDER_MODES = ("nearest", "reflect", "reflect101")

CPU_CHUNK_BYTES = 1 << 21  # ~2 MiB of float32 pixels per block: a block's temporaries stay in L2/L3


def images_per_chunk(images: torch.Tensor, bytes_per_value: int = 4) -> int:
    """How many images :func:`map_chunks` processes at once: a ~2 MiB block on CPU, the whole batch elsewhere."""
    if images.device.type != "cpu":
        return max(1, images.shape[0])
    per_image = max(1, math.prod(images.shape[1:]) * bytes_per_value)
    return max(1, CPU_CHUNK_BYTES // per_image)


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc() if sys.platform.startswith("linux") else None
_MADV_HUGEPAGE = 14
_HUGE_PAGE = 1 << 21


def empty_batch(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty`` for a batch-sized result, backed by transparent huge pages on Linux CPU where possible.

    Why: a fresh 64 x 3 x 224² float32 output (38 MB) is a new memory mapping each time, and touching it costs one
    page fault per 4 KiB (~9,400 faults, ~15 ms on a VM: as much as a cheap corruption itself). Advising huge pages
    before the first touch (``madvise(MADV_HUGEPAGE)``, honoured when THP is in "madvise" or "always" mode) turns
    that into a few dozen 2 MiB faults. Only this buffer's mapping is affected; anywhere else it is plain
    ``torch.empty``.
    """
    out = torch.empty(shape, dtype=dtype, device=device)
    if _LIBC is not None and out.device.type == "cpu" and out.nbytes >= 4 * _HUGE_PAGE:
        start = (out.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
        stop = (out.data_ptr() + out.nbytes) & ~(_HUGE_PAGE - 1)
        if stop > start:
            _LIBC.madvise(start, stop - start, _MADV_HUGEPAGE)  # advisory: failure just means small pages
    return out


def map_chunks(fn, images: torch.Tensor, *per_image, chunk: int | None = None, fills_out: bool = False
               ) -> torch.Tensor:
    """``fn(images, *per_image)`` evaluated over consecutive blocks of images, results stacked along dim 0.

    Why: on CPU a whole-batch pipeline (64 x 3 x 224² float32 = 38 MB per temporary) runs out of cache and pays a
    page fault per 4 KiB for every fresh temporary (glibc maps allocations above 32 MB anew each time); the same ops
    on ~2 MiB blocks run several times faster. The corruptions are per-image computations (each image's randomness
    comes from its own seed), so blocking changes no result. On a GPU the whole batch is one block. ``per_image``
    tensors (seeds, angles, ...) are split along dim 0 with the images. With ``fills_out=True`` the result has the
    images' shape and dtype and ``fn(images, *per_image, out=block)`` writes each block into it (saves a copy).
    """
    n = images.shape[0]
    chunk = images_per_chunk(images) if chunk is None else max(1, int(chunk))
    if fills_out:
        out = empty_batch(images.shape, images.dtype, images.device)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            fn(images[start:stop], *(t[start:stop] for t in per_image), out=out[start:stop])
        return out
    if n <= chunk:
        return fn(images, *per_image)
    out = None
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = fn(images[start:stop], *(t[start:stop] for t in per_image))
        if out is None:
            out = empty_batch((n, *part.shape[1:]), part.dtype, part.device)
        out[start:stop] = part
    return out


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
    """Extend (..., H, W) by the given amounts with a scipy/OpenCV border mode (see :func:`border_indices`).

    Edge replication and short reflect-101 pads use ``F.pad`` (torch's "replicate" / "reflect"), the rest a gather
    of rows then columns; same values either way.
    """
    h, w = images.shape[-2:]
    pads = (left, right, top, bottom)
    fast = (mode == "nearest" or (mode == "reflect101" and max(top, bottom) < h and max(left, right) < w))
    if fast and images.is_floating_point() and images.ndim >= 2 and images.numel() > 0:
        planes = images.reshape(-1, h, w)
        padded = F.pad(planes, pads, mode="replicate" if mode == "nearest" else "reflect")
        return padded.view(*images.shape[:-2], h + top + bottom, w + left + right)
    if mode == "reflect" and max(top, bottom) <= h and max(left, right) <= w:  # d c b a | a b c d: mirrored slices
        parts = [images[..., :top, :].flip(-2), images, images[..., h - bottom:, :].flip(-2)]
        images = torch.cat([part for part in parts if part.shape[-2]], dim=-2)
        parts = [images[..., :left].flip(-1), images, images[..., w - right:].flip(-1)]
        return torch.cat([part for part in parts if part.shape[-1]], dim=-1)
    rows = border_indices(h, top, bottom, mode, images.device)
    cols = border_indices(w, left, right, mode, images.device)
    return images.index_select(-2, rows).index_select(-1, cols)


def fft_size(n: int) -> int:
    """The smallest 2^a·3^b·5^c >= n: a length every FFT library transforms quickly."""
    best = 1 << max(0, (int(n) - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < n:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


_spectra: dict[tuple, torch.Tensor] = {}


def correlate2d_fft(images: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-plane 2-D correlation of (..., H, W) with a centred odd (kh, kw) kernel, borders by ``mode``, via FFT.

    Out(y, x) = Σ K(i, j) · In(y + i - kh//2, x + j - kw//2), as ``cv2.filter2D`` / scipy ``correlate``. The image
    is border-extended by the kernel's half sizes and transformed at a fast size >= H + kh - 1 (so the circular
    wrap-around never reaches a kept output), multiplied by the conjugate spectrum of the kernel (cached) and
    transformed back: O(log) work per pixel instead of kh·kw, exact to float rounding (~1e-6 in float32). Float32
    unless the input is float64.
    """
    kh, kw = kernel.shape
    h, w = images.shape[-2:]
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    padded = pad_images(images.to(dtype), kh // 2, kh // 2, kw // 2, kw // 2, mode)
    size = (fft_size(h + kh - 1), fft_size(w + kw - 1))
    key = (tuple(kernel.shape), kernel.to(torch.float64).cpu().numpy().tobytes(), size, dtype, str(images.device))
    spectrum = _spectra.get(key)
    if spectrum is None:
        spectrum = torch.fft.rfft2(kernel.to(dtype=dtype, device=images.device), s=size).conj()
        if len(_spectra) > 64:
            _spectra.clear()
        _spectra[key] = spectrum
    out = torch.fft.irfft2(torch.fft.rfft2(padded, s=size).mul_(spectrum), s=size)
    return out[..., :h, :w]


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
    if weights.numel() > _MAX_TAPS_SHIFTED:
        idx = border_indices(size, radius, radius, mode, images.device)
        rows = torch.arange(size, device=images.device).view(-1, 1).expand(size, weights.numel())
        cols = idx.unfold(0, weights.numel(), 1)  # (size, taps): source index of tap t for output o
        matrix = torch.zeros(size, size, dtype=images.dtype, device=images.device)
        values = weights.to(dtype=images.dtype, device=images.device).repeat(size)
        matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), values, accumulate=True)
        return torch.matmul(matrix, images) if axis == -2 else torch.matmul(images, matrix.T)
    if axis == -2:
        padded = pad_images(images, radius, radius, 0, 0, mode)
    else:
        padded = pad_images(images, 0, 0, radius, radius, mode)
    out = None
    for t, k in enumerate(weights.tolist()):
        tap = padded.narrow(axis, t, size)
        out = tap * k if out is None else out.add_(tap, alpha=k)
    return out


def _separable_correlate_compiled(images: torch.Tensor, weights: torch.Tensor, mode: str) -> torch.Tensor:
    """Both passes of :func:`_correlate_axis`'s shifted sums (a short kernel) by :func:`separable_correlate_loop`
    on CPU: the same arithmetic, each image's planes in cache, no padded copies."""
    h, w = images.shape[-2:]
    radius = (weights.numel() - 1) // 2
    planes = images.reshape(-1, h, w).contiguous()
    rows, cols = (border_indices(size, radius, radius, mode).numpy().astype(np.uint64) for size in (h, w))
    out = torch.empty_like(planes)
    kernels.run_compiled(separable_correlate_loop, len(planes), planes.numpy(), weights.to(images.dtype).numpy(),
                         rows, cols, out.numpy())
    return out.view(images.shape)


def separable_correlate_loop(planes, taps, rows, cols, out, start, stop):
    """Planes start..stop-1 correlated along H, then along W, with ``taps`` (for
    :func:`corruptions.kernels.run_compiled`), as :func:`_correlate_axis` computes it: the first tap's product,
    then one fused multiply-add per further tap (what torch's ``add_(tap, alpha=k)`` does). ``rows``/``cols``: the
    source index of each position of the border-extended signal (:func:`border_indices`)."""
    _, height, width = planes.shape
    count = taps.shape[0]
    mid = np.empty_like(planes[0])
    padded = np.empty(width + count - 1, dtype=planes.dtype)
    for p in range(start, stop):
        x = planes[p]
        for y in range(height):  # along H: rows y - r .. y + r of the extended image
            acc, first = mid[y], x[rows[y]]
            for j in range(width):
                acc[j] = first[j] * taps[0]
            for t in range(1, count):
                k, source = taps[t], x[rows[y + t]]
                for j in range(width):
                    acc[j] = kernels.fma(k, source[j], acc[j])
        for y in range(height):  # along W, through one extended row
            row = mid[y]
            for q in range(width + count - 1):
                padded[q] = row[cols[q]]
            acc = out[p, y]
            for j in range(width):
                acc[j] = padded[j] * taps[0]
            for t in range(1, count):
                k, source = taps[t], padded[t:t + width]
                for j in range(width):
                    acc[j] = kernels.fma(k, source[j], acc[j])


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
    if (weights.numel() <= _MAX_TAPS_SHIFTED and images.dtype in (torch.float32, torch.float64)
            and kernels.usable(images) and images.numel()):
        return _separable_correlate_compiled(images, weights, mode)
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
    ch, top, _, _ = zoom_geometry(h, factor)
    cw, left, _, _ = zoom_geometry(w, factor)
    return zoom_crop(images[..., top:top + ch, left:left + cw], h, w, factor)


def zoom_crop(crop: torch.Tensor, height: int, width: int, factor: float) -> torch.Tensor:
    """The second half of :func:`clipped_zoom`: the already cut centre crop (ceil(H / z), ceil(W / z)) zoomed by
    ``factor`` and trimmed to (height, width). Lets a caller produce only the crop (e.g. draw noise for it alone)."""
    ch, _, out_h, trim_h = zoom_geometry(height, factor)
    cw, _, out_w, trim_w = zoom_geometry(width, factor)
    if tuple(crop.shape[-2:]) != (ch, cw):
        raise ValueError(f"zoom_crop: expected a {ch}x{cw} crop for zoom {factor}, got {tuple(crop.shape[-2:])}")
    if (out_h, out_w) == (ch, cw):  # factor 1: scipy's zoom samples the grid points exactly
        return crop.clone(memory_format=torch.contiguous_format)
    zoomed = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    return zoomed[..., trim_h:trim_h + height, trim_w:trim_w + width].contiguous()


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


def quantize_imagemagick(acc255: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """8-bit result of ImageMagick Q16 + 8-bit PNG writer: floor(round_half_up(257·acc) / 257) (spec §2.5 step 5).

    For a non-negative accumulator; the levels come back in ``dtype`` (float32 holds them and the Q16 values exactly;
    the int conversion truncates, i.e. floors)."""
    q16 = (acc255 * 257.0).add_(0.5).to(torch.int32).to(torch.promote_types(dtype, torch.float32))
    return q16.div_(257.0).floor_().to(dtype)


def motion_blur(images: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor,
                quantize: bool = False) -> torch.Tensor:
    """ImageMagick ``MotionBlurImage`` on (N, C, H, W) values in [0, 1] with one angle per image (spec §2.5).

    Output(y, x) = Σ_i k_i · In(clamp(y + dy_i), clamp(x + dx_i)): a one-sided Gaussian streak along
    (cos θ, sin θ), edge replicate, per channel. Batched: the rows are edge-padded once (row indices are clamped);
    a tap is then, for every (image, channel, row), a window of W consecutive values of a padded row. On
    CPU one ``embedding_bag`` (a fused weighted sum of rows picked by index) reads those windows from an
    overlapping-window view of the padded planes, in ~2 MiB blocks of images; elsewhere a loop over the ≤ 41 taps
    copies each tap's rows with ``index_select``. With ``quantize=True`` the input is read as 8-bit (round(255·x),
    the reference's PNG round trip) and the result is ImageMagick's 8-bit value / 255, accumulated in float64 so
    the step-5 rounding boundaries fall as in ImageMagick's double arithmetic (float32 sums flip ~1e-4 of the values
    by one level); otherwise the float result in the input dtype (accumulated in float64 on CPU). uint8 images
    (with ``quantize=True``) are the 8-bit levels themselves, and the 8-bit result comes back as uint8.
    """
    if not images.is_floating_point() and not (quantize and images.dtype == torch.uint8):
        raise TypeError(f"motion_blur needs a float tensor (or uint8 levels with quantize=True), got {images.dtype}")
    n = images.shape[0]
    angles_deg = torch.as_tensor(angles_deg, device=images.device).reshape(-1)
    if angles_deg.shape[0] != n:
        raise ValueError(f"need one angle per image: {n} images, {angles_deg.shape[0]} angles")
    weights = motion_blur_kernel(radius, sigma)
    dx, dy = motion_blur_offsets(weights.numel(), angles_deg)
    if kernels.usable(images) and images.numel():
        return _motion_blur_compiled(images, weights, dx, dy, quantize)
    taps = weights.tolist()
    fused = images.device.type == "cpu"
    return map_chunks(lambda x, dx, dy: motion_blur_block(x, taps, dx, dy, quantize, fused), images, dx, dy)


def _motion_blur_compiled(images: torch.Tensor, weights: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
                          quantize: bool) -> torch.Tensor:
    """:func:`motion_blur` by :func:`motion_blur_loop` on CPU: the same float64 sums and quantisation as
    :func:`motion_blur_block`, one output row at a time in cache, without the padded copy and index tensors."""
    levels_in = images.dtype == torch.uint8
    src = images if levels_in else images.to(work_dtype(images))
    if quantize and not levels_in:
        src = torch.round(src * 255.0)
    out = torch.empty(images.shape, dtype=src.dtype)  # uint8 levels, or the work dtype (at least float32)
    n, _, _, w = images.shape
    wide = out.dtype == torch.float64  # the levels' division in float64 (else float32, also for uint8 out)
    kernels.run_compiled(motion_blur_loop, n, src.contiguous().numpy(), weights.numpy(), dx.contiguous().numpy(),
                         dy.contiguous().numpy(), quantize, wide, out.numpy(), np.empty((n, w), dtype=np.float64))
    if levels_in:
        return out
    return out.div_(255.0).to(images.dtype) if quantize else out.to(images.dtype)


def motion_blur_loop(src, taps, dx, dy, quantize, wide, out, scratch, start, stop):
    """:func:`motion_blur_block` for images start..stop-1 (for :func:`corruptions.kernels.run_compiled`): per
    output row, Σ_t k_t · src[clamp(y + dy_t), clamp(x + dx_t)] summed in float64 in tap order (as the float64
    ``embedding_bag``), then :func:`quantize_imagemagick`'s levels (divided in float64 if ``wide``, else float32),
    or the sum itself, into ``out``. ``scratch`` (N, W) float64."""
    _, channels, height, width = src.shape
    for i in range(start, stop):
        acc = scratch[i]
        for c in range(channels):
            for y in range(height):
                acc[:] = 0.0
                for t in range(taps.shape[0]):
                    k, shift = taps[t], dx[i, t]
                    row = src[i, c, min(max(y + dy[i, t], 0), height - 1)]
                    x0 = min(width, max(0, -shift))  # x < x0 reads column 0, x >= x1 column W-1
                    x1 = max(x0, min(width, width - shift))
                    edge = k * np.float64(row[0])
                    for x in range(x0):
                        acc[x] += edge
                    inner, source = acc[x0:x1], row[x0 + shift:x1 + shift]
                    for x in range(x1 - x0):
                        inner[x] += k * np.float64(source[x])
                    edge = k * np.float64(row[width - 1])
                    for x in range(x1, width):
                        acc[x] += edge
                target = out[i, c, y]
                for x in range(width):
                    if not quantize:
                        target[x] = acc[x]
                    elif wide:
                        target[x] = np.floor(np.float64(np.int32(acc[x] * 257.0 + 0.5)) / 257.0)
                    else:
                        target[x] = np.floor(np.float32(np.int32(acc[x] * 257.0 + 0.5)) / np.float32(257.0))


def motion_blur_block(images: torch.Tensor, taps: list[float], dx: torch.Tensor, dy: torch.Tensor,
                      quantize: bool, fused: bool) -> torch.Tensor:
    """:func:`motion_blur` for given taps and per-image offsets (N, taps); ``fused``: one float64 ``embedding_bag``
    (fastest on CPU) instead of a loop of ``index_select`` + add over the taps (GPU)."""
    n, c, h, w = images.shape
    device = images.device
    reach = len(taps) - 1
    if images.numel() == 0:
        return images.clone()
    levels_in = images.dtype == torch.uint8
    src = images if levels_in else images.to(work_dtype(images))
    if quantize and not levels_in:
        src = torch.round(src * 255.0)  # integers: exact in any float dtype
    # rows are padded by edge replication (written straight into the accumulation dtype); the vertical border is
    # handled by clamping row indices below
    wp = w + 2 * reach
    rows_in = src.reshape(n * c, h, w)
    padded = torch.empty((n * c, h, wp), dtype=torch.float64 if quantize or fused else src.dtype, device=device)
    padded[..., reach:reach + w] = rows_in
    padded[..., :reach] = rows_in[..., :1]
    padded[..., reach + w:] = rows_in[..., w - 1:]
    windows = padded.view(-1).unfold(0, w, 1)  # windows[j] = padded.flat[j : j + w], a view (no copy)
    planes = torch.arange(n * c, device=device).view(n, c, 1, 1) * (h * wp)
    dy, dx = dy.to(device).view(n, 1, 1, -1), dx.to(device).view(n, 1, 1, -1)
    source_rows = (torch.arange(h, device=device).view(1, 1, h, 1) + dy).clamp_(0, h - 1)
    index = (planes + source_rows * wp + (dx + reach)).view(n * c * h, len(taps))  # window of row (n, c, y), tap i
    if fused:
        # one fused weighted sum of the taps' rows: embedding_bag reads the overlapping window view in place
        # (float64 only: its float32 path copies the weight table)
        weights = torch.tensor(taps, dtype=torch.float64).expand(index.shape)
        acc = F.embedding_bag(index, windows, per_sample_weights=weights, mode="sum")
    else:
        acc = None
        for i, k in enumerate(taps):
            tap = windows.index_select(0, index[:, i])
            acc = tap.mul_(k) if acc is None else acc.add_(tap, alpha=k)
    acc = acc.view(n, c, h, w)
    if levels_in:
        return quantize_imagemagick(acc, torch.float32).to(torch.uint8)
    if quantize:
        return quantize_imagemagick(acc, images.dtype).div_(255.0)
    return acc.to(images.dtype)
