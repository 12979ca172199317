"""A batched, device-agnostic model of a camera's image pipeline, for corruptions that happen inside the camera.

Follows the unprocessing model of Brooks, Mildenhall, Xue, Chen, Sharlet & Barron, "Unprocessing Images for
Learned Raw Denoising", CVPR 2019: an sRGB image is mapped back to approximate linear raw sensor values by
inverting, in reverse order, the steps a camera applies, and processed forward again after an effect has been
applied where it physically happens (optics and exposure on the light, noise and defects at the photosites,
white balance and colour correction in the processing, sharpening and JPEG at the end)::

    unprocess:  sRGB --inverse smoothstep--> --gamma 2.2 expansion--> linear sRGB --rgb2cam--> camera RGB
                --divide by (brightness gain x white-balance gains)--> raw  [--Bayer mosaic--> CFA plane]
    process:    [CFA --demosaic-->] raw --x gains--> --clip [0, 1]--> --cam2rgb--> linear sRGB --gamma 1/2.2-->
                --smoothstep--> sRGB --quantise to 8 bits--> output

Unlike Brooks et al., who draw the colour matrix and gains at random to train a denoiser, this module uses ONE
fixed, documented camera (:data:`DEFAULT_CAMERA`) so that a corruption is a function of the image and its seed
only, and so that process(unprocess(x)) with every effect off gives x back (exactly, up to float rounding and the
final 8-bit quantisation). For the same reason nothing is clipped on the way in (Brooks et al. clip raw to
[0, 1]; with this camera every sRGB colour lands inside [0, 1] anyway, since its rgb2cam matrix has positive
entries only). On the way out the white-balanced camera RGB is clipped to [0, 1] as a real pipeline does: raw
values an effect pushed below black (read noise) are cut, and sensor-saturated highlights turn white rather than
magenta. Neither clip changes an image that no effect touched.

Everything is batched torch on (N, 3, H, W) tensors on any device; no Python loop over images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from corruptions.common import work_dtype

# The four XYZ -> camera matrices that Brooks et al. mix at random (their released unprocess.py); we use their
# equal-weight mean, the centre of that distribution, as one representative camera.
_BROOKS_XYZ2CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)
# linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1
_RGB2XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))


def _rgb2cam_from_xyz2cam(xyz2cam) -> tuple[tuple[float, ...], ...]:
    """rgb2cam = xyz2cam @ rgb2xyz with each row normalised to sum 1 (white maps to white), as Brooks et al."""
    m = torch.tensor(xyz2cam, dtype=torch.float64) @ torch.tensor(_RGB2XYZ, dtype=torch.float64)
    m = m / m.sum(dim=1, keepdim=True)
    return tuple(tuple(float(v) for v in row) for row in m.tolist())


@dataclass(frozen=True)
class Camera:
    """Fixed pipeline constants of one simulated camera.

    ``rgb2cam``: linear sRGB -> camera RGB (rows sum to 1). ``red_gain``/``blue_gain``: white-balance gains the
    camera applies to raw red/blue (green = 1). ``brightness_gain``: digital gain between raw and output, so
    that raw white sits at 1 / brightness_gain of the sensor's full scale (headroom for highlights).
    ``gamma``: the power-law encoding exponent. ``output_bits``: quantisation of the processed image.
    """

    rgb2cam: tuple[tuple[float, ...], ...]
    red_gain: float = 2.15
    blue_gain: float = 1.7
    brightness_gain: float = 1.25
    gamma: float = 2.2
    output_bits: int = 8

    def matrix(self, like: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        m = torch.tensor(self.rgb2cam, dtype=torch.float64)
        if inverse:
            m = torch.linalg.inv(m)
        return m.to(device=like.device, dtype=like.dtype)

    def gains(self, like: torch.Tensor) -> torch.Tensor:
        """(1, 3, 1, 1) total raw -> camera-RGB gains: brightness x white balance."""
        g = torch.tensor([self.red_gain, 1.0, self.blue_gain], dtype=torch.float64) * self.brightness_gain
        return g.to(device=like.device, dtype=like.dtype).view(1, 3, 1, 1)


# White-balance gains: midpoints of Brooks et al.'s sampling ranges (red U(1.9, 2.4), blue U(1.5, 1.9)); the
# brightness gain is 1 / 0.8, the mean of the brightening they invert (1 / N(0.8, 0.1)).
DEFAULT_CAMERA = Camera(rgb2cam=_rgb2cam_from_xyz2cam(
    [[sum(m[i][j] for m in _BROOKS_XYZ2CAMS) / len(_BROOKS_XYZ2CAMS) for j in range(3)] for i in range(3)]))


# ---------------------------------------------------------------------------------------------------- illuminants


def planckian_xy(cct: float) -> tuple[float, float]:
    """CIE 1931 (x, y) of a black body at ``cct`` kelvin (cubic-spline fit of Kim et al., J. Korean Phys. Soc. 41,
    2002; 1667-25000 K), so that white-balance errors move along the locus of real illuminants."""
    t = float(cct)
    if not 1667.0 <= t <= 25000.0:
        raise ValueError(f"cct must be in [1667, 25000] K, got {cct}")
    if t <= 4000.0:
        x = -0.2661239e9 / t ** 3 - 0.2343589e6 / t ** 2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t ** 3 + 2.1070379e6 / t ** 2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x ** 3 - 1.34811020 * x ** 2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x ** 3 - 1.37418593 * x ** 2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x ** 3 - 5.87338670 * x ** 2 + 3.75112997 * x - 0.37001483
    return x, y


def illuminant_camera_rgb(cct: float, camera: Camera | None = None) -> torch.Tensor:
    """Camera RGB (float64, green = 1) of a black-body illuminant: what the camera's raw sees of a white lit by it.

    rgb2cam's rows are normalised so that D65 white gives (1, 1, 1), i.e. this is the illuminant's colour relative
    to D65 through the camera's own spectral sensitivities; the ratio of two of these is the gain error of a camera
    that white-balances for one illuminant under the other.
    """
    camera = camera or DEFAULT_CAMERA
    x, y = planckian_xy(cct)
    xyz = torch.tensor([x / y, 1.0, (1.0 - x - y) / y], dtype=torch.float64)
    rgb = torch.linalg.solve(torch.tensor(_RGB2XYZ, dtype=torch.float64), xyz)
    cam = torch.tensor(camera.rgb2cam, dtype=torch.float64) @ rgb
    return cam / cam[1]


# ----------------------------------------------------------------------------------------------- tone and colour


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """The global tone curve 3x² - 2x³ on [0, 1] (Brooks et al.'s stand-in for a camera's S-curve)."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def inverse_smoothstep(y: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`smoothstep` on [0, 1]: 1/2 - sin(asin(1 - 2y) / 3)."""
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def apply_matrix(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """out[:, i] = Σ_j matrix[i, j] · images[:, j] on (N, 3, H, W)."""
    return torch.einsum("ij,njhw->nihw", matrix, images)


def srgb_to_linear(images: torch.Tensor, camera: Camera = DEFAULT_CAMERA) -> torch.Tensor:
    """Undo the tone curve and the gamma encoding: display values -> linear sRGB in [0, 1]."""
    return inverse_smoothstep(images).clamp_min(1e-8) ** camera.gamma


def linear_to_srgb(linear: torch.Tensor, camera: Camera = DEFAULT_CAMERA) -> torch.Tensor:
    """Gamma encoding then the tone curve; negative (out-of-gamut) and > 1 values are clipped first."""
    return smoothstep(linear.clamp(1e-8, 1.0) ** (1.0 / camera.gamma))


def unprocess(images: torch.Tensor, camera: Camera = DEFAULT_CAMERA) -> torch.Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> full-colour linear raw (N, 3, H, W): what each photosite colour would read.

    Raw is in units of the sensor's full scale (saturation = 1); white lands at (1/(2.15·1.25), 1/1.25,
    1/(1.7·1.25)) ≈ (0.37, 0.8, 0.47). Computes in at least float32.
    """
    x = images.to(work_dtype(images))
    linear = srgb_to_linear(x, camera)
    cam = apply_matrix(linear, camera.matrix(linear))
    return cam / camera.gains(cam)


def quantize(images: torch.Tensor, bits: float | None) -> torch.Tensor:
    """Round [0, 1] to steps of 1 / (2**bits - 1) (``None`` = leave continuous).

    ``bits`` may be fractional: an ADC's effective number of bits (ENOB), whose noise-limited step is not a power
    of two; the top step is then clipped at 1.
    """
    if bits is None:
        return images
    levels = 2.0 ** float(bits) - 1.0
    return (torch.round(images.clamp(0.0, 1.0) * levels) / levels).clamp_(0.0, 1.0)


def process(raw: torch.Tensor, camera: Camera = DEFAULT_CAMERA, wb_gains: torch.Tensor | None = None,
            output_bits: int | None | str = "camera", clip_balanced: bool = True) -> torch.Tensor:
    """Full-colour linear raw (N, 3, H, W) -> sRGB in [0, 1]: gains, clip, colour correction, gamma, tone, quantise.

    ``wb_gains``: per-image (N, 3) white-balance gains to use instead of the camera's (white-balance errors).
    The white-balanced camera RGB is clipped to [0, 1] (black level and highlight clipping, see the module
    docstring). ``clip_balanced=False`` clips only the raw, at black and at the sensor's full scale, and lets
    balanced values above white through the colour matrix to the output clip: for digital gains on unsaturated
    raw (a wrong white balance), which a clip before the matrix would cut and its negative terms shift in hue.
    ``output_bits``: "camera" = the camera's output depth (8 bits), an int, or None for floats.
    """
    if not clip_balanced:
        raw = raw.clamp(0.0, 1.0)
    if wb_gains is None:
        balanced = raw * camera.gains(raw)
    else:
        balanced = raw * wb_gains.to(raw).view(-1, 3, 1, 1) * camera.brightness_gain
    if clip_balanced:
        balanced = balanced.clamp(0.0, 1.0)
    linear = apply_matrix(balanced, camera.matrix(balanced, inverse=True))
    out = linear_to_srgb(linear, camera)
    return quantize(out, camera.output_bits if output_bits == "camera" else output_bits)


# ------------------------------------------------------------------------------------------------ Bayer mosaic


def bayer_masks(height: int, width: int, like: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """(1, 3, H, W) 0/1 masks: which photosites carry red, green and blue for a 2x2 colour-filter pattern."""
    if sorted(pattern) != ["B", "G", "G", "R"]:
        raise ValueError(f"pattern must be a permutation of RGGB, got {pattern!r}")
    rows = torch.arange(height, device=like.device).view(-1, 1) % 2
    cols = torch.arange(width, device=like.device).view(1, -1) % 2
    site = rows * 2 + cols  # 0 1 / 2 3 within each 2x2 cell
    masks = [torch.zeros(height, width, dtype=like.dtype, device=like.device) for _ in range(3)]
    for k, colour in enumerate(pattern):
        masks["RGB".index(colour)] += (site == k).to(like.dtype)
    return torch.stack(masks).unsqueeze(0)


def mosaic(raw: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """Full-colour raw (N, 3, H, W) -> the colour-filter-array plane (N, 1, H, W): one colour per photosite."""
    return (raw * bayer_masks(raw.shape[-2], raw.shape[-1], raw, pattern)).sum(1, keepdim=True)


_BILINEAR_G = ((0.0, 1.0, 0.0), (1.0, 4.0, 1.0), (0.0, 1.0, 0.0))
_BILINEAR_RB = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))


def demosaic_bilinear(cfa: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """CFA (N, 1, H, W) -> (N, 3, H, W) by bilinear interpolation of each colour's samples.

    Normalised convolution (interpolated samples / interpolated mask), so the image border needs no special
    case; known samples are kept exactly. The cheap demosaic of low-end pipelines: zipper and false-colour
    artefacts at edges.
    """
    h, w = cfa.shape[-2:]
    masks = bayer_masks(h, w, cfa, pattern)
    kernels = torch.tensor((_BILINEAR_RB, _BILINEAR_G, _BILINEAR_RB), dtype=cfa.dtype, device=cfa.device)
    kernels = kernels.unsqueeze(1)  # (3, 1, 3, 3), one per colour (groups=3)
    samples = F.conv2d(cfa * masks, kernels, padding=1, groups=3)
    weights = F.conv2d(masks.expand(1, 3, h, w), kernels, padding=1, groups=3)
    return samples / weights.clamp_min(1e-12)


def demosaic_nearest(cfa: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """CFA (N, 1, H, W) -> (N, 3, H, W) by copying each 2x2 cell's red, mean green and blue to all four pixels.

    The cheapest demosaic (pixel replication): half the resolution and colour edges offset by one photosite.
    Odd sizes are edge-replicated to even and cropped back.
    """
    n, _, h, w = cfa.shape
    ph, pw = h % 2, w % 2
    padded = F.pad(cfa, (0, pw, 0, ph), mode="replicate") if (ph or pw) else cfa
    hh, ww = padded.shape[-2:]
    masks = bayer_masks(hh, ww, padded, pattern)
    per_colour = F.avg_pool2d(padded * masks, 2) / F.avg_pool2d(masks, 2)  # (N, 3, H/2, W/2)
    full = per_colour.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    return full[..., :h, :w].contiguous()


DEMOSAIC = {"bilinear": demosaic_bilinear, "nearest": demosaic_nearest}


# ----------------------------------------------------------------------------------------------------- geometry


def pixel_coordinates(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v): pixel-centre coordinates (1, H, W) relative to the image centre, in pixels (x right, y down)."""
    v = torch.arange(height, device=like.device, dtype=like.dtype) + 0.5 - height / 2.0
    u = torch.arange(width, device=like.device, dtype=like.dtype) + 0.5 - width / 2.0
    return u.view(1, 1, -1).expand(1, height, width), v.view(1, -1, 1).expand(1, height, width)


def remap(images: torch.Tensor, src_u: torch.Tensor, src_v: torch.Tensor) -> torch.Tensor:
    """Resample (N, C, H, W) at source positions (N or 1, H, W) given like :func:`pixel_coordinates`.

    Bilinear, edge-replicated outside the frame (the scene beyond the crop is unknown; replicating its edge is the
    least conspicuous guess).
    """
    n = images.shape[0]
    h, w = images.shape[-2:]
    grid = torch.stack((src_u / (w / 2.0), src_v / (h / 2.0)), dim=-1)
    grid = grid.expand(n, h, w, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def radial_scale(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Magnify channel c of (N, C, H, W) about the centre by factors[c] (> 1 enlarges): lateral colour."""
    h, w = images.shape[-2:]
    u, v = pixel_coordinates(h, w, images)
    n, c = images.shape[:2]
    f = factors.to(images).view(1, c, 1, 1)
    src_u = (u.unsqueeze(1) / f).expand(n, c, h, w).reshape(n * c, h, w)
    src_v = (v.unsqueeze(1) / f).expand(n, c, h, w).reshape(n * c, h, w)
    out = remap(images.reshape(n * c, 1, h, w), src_u, src_v)
    return out.view(n, c, h, w)


def half_diagonal(height: int, width: int) -> float:
    return math.hypot(height, width) / 2.0
