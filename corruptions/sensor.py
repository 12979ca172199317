"""Sensor-style corruptions: what a different camera does to an image (category "sensor").

Each corruption runs the image back through the camera pipeline of ``corruptions.camera`` (Brooks et al.,
CVPR 2019) and applies its effect where it physically happens:

- on the light reaching the sensor (linear raw, before sampling): vignetting, lateral chromatic aberration,
  barrel distortion, exposure (overexposure, low light), rolling-shutter skew;
- at the photosites: photon shot + read noise, saturation, hot/dead pixels, ADC bit depth, the Bayer mosaic;
- in the processing: demosaicing, white balance, then (on the finished sRGB image) sharpening and JPEG.

Severities are calibrated so that EfficientNet-Lite0's top-1 error rises with severity and severity 5 costs at
least 10 points on the shared ImageNet sample (``benchmarks/calibrate_sensor.py``), within the range real cameras
show wherever that range can cost 10 points; docs/corruptions.md tabulates each range with its source and names
the three stress tests (hot_dead_pixels, low_bit_depth, chromatic_aberration) whose severities go beyond any
camera because no camera's range comes near 10 points. No corruption at severity 5 adds flat saturated regions
to more than 20 % of a photo on average (``benchmarks/sensor_artifacts.py``).
Parameters are given for 224x224 images. Photometric ones are size-independent; geometric ones are relative to
the image (fractions of the width or half-diagonal), so their pixel displacements scale with s = min(H, W) / 224
automatically; pixel-sized ones (sharpening radius, photosite pitch) are multiplied by s, as documented per
corruption. Per-photosite effects (noise, defects, bit depth, JPEG's 8x8 blocks) are per pixel at any size.
Randomness comes from ``corruptions.rng`` keyed by each image's seed, one stream per independent draw.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions import rng
from corruptions.camera import (
    DEFAULT_CAMERA,
    DEMOSAIC,
    half_diagonal,
    illuminant_camera_rgb,
    mosaic,
    pixel_coordinates,
    process,
    quantize,
    radial_scale,
    remap,
    unprocess,
)
from corruptions.common import size_scale, work_dtype
from corruptions.filters import gaussian_filter
from corruptions.registry import register_corruption

# --- photon model: a sensor with FULL_WELL_E electrons at full scale at ISO 100; higher ISO = more analogue gain,
# i.e. fewer electrons per full-scale step; read noise is referred to the input (electrons), fixed. In Brooks et
# al.'s units the shot-noise variance per unit of full scale is ISO / 1e6 (their range 1e-4 to 0.012), and 1 e- of
# read noise sits on their fitted log-read-vs-log-shot line (0.8-1.2 e- over ISO 100-12000 for this full well).
BASE_ISO = 100
FULL_WELL_E = 10000.0
READ_NOISE_E = 1.0

SENSOR_NOISE_ISO = {1: 800, 2: 1600, 3: 3200, 4: 6400, 5: 10000}  # s5: shot variance 0.01 of full scale
# (stops of light missing, ISO the camera shoots at, stops it brightens back digitally, ADC bits)
LOW_LIGHT = {1: (1.0, 200, 0.5, 10), 2: (2.25, 200, 1.125, 10), 3: (3.5, 200, 1.75, 10), 4: (4.5, 200, 2.25, 10),
             5: (5.5, 200, 2.75, 10)}
# an auto-exposure miss; at +1.75 stops blown-out highlights cover 15 % of a photo on average (20 % is the bound)
OVEREXPOSURE_STOPS = {1: 0.75, 2: 1.0, 3: 1.25, 4: 1.5, 5: 1.75}
# White balance off along the black-body locus: the scene's light is this many mired (1e6 / K) warmer than the
# daylight (6504 K) the camera balanced for, or the reverse mistake (a cool cast). s4 ~ CIE A (2856 K), s5 2500 K.
WHITE_BALANCE_MIRED = {1: 50, 2: 100, 3: 150, 4: 200, 5: 250}
WHITE_BALANCE_DAYLIGHT_K = 6504.0
# (demosaic, photosite pitch in image pixels at 224)
BAYER = {1: ("bilinear", 1.0), 2: ("bilinear", 1.25), 3: ("bilinear", 1.5), 4: ("bilinear", 2.0), 5: ("bilinear", 2.5)}
# of photosites, half hot, half dead; a stress test: real sensors have ~1e-5 (Chapman et al.), worth +0.4 points
DEFECT_FRACTION = {1: 0.01, 2: 0.02, 3: 0.035, 4: 0.06, 5: 0.1}
# (natural cos^4 falloff: stops lost in the corners, at most the 3.7 EV of a fast prime wide open on full frame;
#  image-circle radius in half-diagonals or None: a lens made for a smaller format, 0.8 leaves 9 % of the frame dark)
VIGNETTE = {1: (2.5, None), 2: (3.0, None), 3: (3.5, 0.95), 4: (3.7, 0.875), 5: (3.7, 0.8)}
VIGNETTE_EDGE = 0.15  # width of the image circle's soft edge, in half-diagonals
# red x (1 + a), blue x (1 - a); a stress test: a real lens's worst is a ~ 0.15 % (worth +0.6 points)
CHROMATIC_ABERRATION = {1: 0.005, 2: 0.01, 3: 0.02, 4: 0.035, 5: 0.06}
BARREL_K = {1: 0.1, 2: 0.25, 3: 0.5, 4: 0.75, 5: 1.0}
# (skew: horizontal travel during readout as a fraction of the width, wobble amplitude as a fraction of the width)
ROLLING_SHUTTER = {1: (0.05, 0.005), 2: (0.12, 0.012), 3: (0.16, 0.016), 4: (0.22, 0.022), 5: (0.3, 0.03)}
ROLLING_SHUTTER_EXPOSURE_RATIO = 0.125  # exposure time / readout time: the pan smears this much of the skew
ROLLING_SHUTTER_SMEAR_TAPS = 7
# (amount, sigma px at 224); amount at most 5, the top of the range of image servers' and editors' unsharp masks
SHARPEN = {1: (1.0, 1.5), 2: (2.0, 2.0), 3: (3.0, 2.0), 4: (4.0, 2.5), 5: (5.0, 3.0)}
# effective bits of the raw ADC; a stress test: cameras digitise at 10-14 bits (8 bits is worth -0.2 points)
ADC_BITS = {1: 5.0, 2: 4.25, 3: 3.75, 4: 3.25, 5: 2.75}
# per-colour analogue gain ahead of the ADC (R, G, B): the camera's daylight white balance, so that a neutral
# reaches the ADC at the same level in all three colours and every colour uses the same part of its range
ADC_ANALOG_GAINS = (DEFAULT_CAMERA.red_gain, 1.0, DEFAULT_CAMERA.blue_gain)
# (camera quality, re-save quality): a camera's "normal" to "basic" JPEG, re-saved by an app or editor
DOUBLE_JPEG = {1: (90, 75), 2: (85, 60), 3: (80, 50), 4: (75, 40), 5: (70, 30)}
DOUBLE_JPEG_SHIFT = 4  # pixels cropped between the two saves: the second 8x8 grid is misaligned


def _out(result: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return result.clamp(0.0, 1.0).to(images.dtype)


def full_scale_electrons(iso: float) -> float:
    """Electrons that fill the ADC's range at ``iso``: the full well at base ISO, divided by the analogue gain."""
    return FULL_WELL_E * BASE_ISO / float(iso)


def photon_noise(raw: torch.Tensor, seeds: torch.Tensor, electrons_full_scale: float, stream: int = 0) -> torch.Tensor:
    """Shot + read noise at the photosites: Gaussian with variance (signal electrons + read²), as Brooks et al.

    ``raw`` in full-scale units; the result is in the same units, not clipped (the pipeline clips at black).
    """
    electrons = raw.clamp_min(0.0) * electrons_full_scale
    sigma = torch.sqrt(electrons + READ_NOISE_E ** 2)
    noise = rng.normal(seeds, tuple(raw.shape[1:]), stream=stream, dtype=raw.dtype)
    return (electrons + sigma * noise) / electrons_full_scale


# ------------------------------------------------------------------------------------------------- photosites


@register_corruption("sensor_noise", category="sensor", benchmark="sensor", random=True,
                     params={s: {"iso": v, "full_well_e": FULL_WELL_E, "read_noise_e": READ_NOISE_E}
                             for s, v in SENSOR_NOISE_ISO.items()})
def sensor_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """High-ISO photon shot + read noise in raw, then processed (coloured, signal-dependent noise).

    ISO 800-10000 on a sensor with a 10,000 e- full well at ISO 100 and 1 e- read noise; correct exposure. Shot
    noise 0.0008-0.01 of full scale per unit signal, inside Brooks et al.'s 0.0001-0.012. Per photosite, so
    size-independent.
    """
    raw = unprocess(images)
    noisy = photon_noise(raw, seeds, full_scale_electrons(SENSOR_NOISE_ISO[severity])).clamp_max(1.0)
    return _out(process(noisy), images)


@register_corruption("low_light_noise", category="sensor", benchmark="sensor", random=True,
                     params={s: {"stops_under": v[0], "iso": v[1], "digital_push_stops": v[2], "adc_bits": v[3]}
                             for s, v in LOW_LIGHT.items()})
def low_light_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Too little light: the scene is 1-5.5 stops darker than a correct exposure, the camera (ISO 200) captures
    few photons (shot + read noise), digitises at 10 bits and brightens back only half the missing stops.

    Dark, noisy and banded shadows. Per photosite, so size-independent.
    """
    stops, iso, push, bits = LOW_LIGHT[severity]
    raw = unprocess(images) * 2.0 ** -stops
    noisy = quantize(photon_noise(raw, seeds, full_scale_electrons(iso)), bits)
    return _out(process(noisy * 2.0 ** push), images)


@register_corruption("overexposure", category="sensor", benchmark="sensor", random=False,
                     params={s: {"stops_over": v} for s, v in OVEREXPOSURE_STOPS.items()})
def overexposure(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """0.75-1.75 stops too much light (an auto-exposure miss): raw scaled up and saturated at the sensor's full well,
    highlights clip to white.

    Bounded so that clipped flat highlights cover at most 20 % of a photo on average. Pointwise, size-independent.
    """
    raw = unprocess(images) * 2.0 ** OVEREXPOSURE_STOPS[severity]
    return _out(process(raw.clamp_max(1.0)), images)


@register_corruption("hot_dead_pixels", category="sensor", benchmark="sensor", random=True,
                     params={s: {"defect_fraction": v} for s, v in DEFECT_FRACTION.items()})
def hot_dead_pixels(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Defective photosites: a fraction (1-10 %) of the raw samples stuck at full scale (hot) or zero (dead). A
    stress test beyond real cameras, which have about 1e-5 (no camera's rate costs 10 points).

    Each raw sample (pixel x colour) fails independently, half hot and half dead, so defects show as coloured
    dots after processing. A per-photosite rate, so the same fraction at any size.
    """
    raw = unprocess(images)
    u = rng.uniform(seeds, tuple(raw.shape[1:]), stream=0, dtype=raw.dtype)
    half = DEFECT_FRACTION[severity] / 2.0
    raw = torch.where(u < half, torch.ones_like(raw), raw)
    raw = torch.where(u > 1.0 - half, torch.zeros_like(raw), raw)
    return _out(process(raw), images)


@register_corruption("low_bit_depth", category="sensor", benchmark="sensor", random=False,
                     params={s: {"adc_bits": v, "analog_gains": ADC_ANALOG_GAINS} for s, v in ADC_BITS.items()})
def low_bit_depth(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A coarse analogue-to-digital converter: linear raw rounded to 5 down to 2.75 effective bits, so after gamma
    the tones band into a few flat levels, most coarsely in the shadows (linear steps), which sink to black. A
    stress test beyond real cameras, which digitise at 10-14 bits (no camera's depth costs 10 points).

    Each colour is digitised in the same raw units behind per-colour analogue gains set to the daylight white
    balance (as in CMOS sensors with per-colour analogue gain), so a grey reaches the ADC at one level in all three
    colours and gets one code. Without them red and blue (raw white at 37 % and 47 % of full scale) got half of
    green's levels, and a grey's unequal steps, amplified about 2x by the colour matrix, became the wide pink and
    green planes no camera shows. Milder colour steps remain wherever a smooth colour's three channels round
    apart; a camera's chroma noise reduction removes such low-signal colour blotches, modelled in the limit: each
    pixel keeps its own chroma and takes its level (the mean of its three codes) from the ADC. Pointwise,
    size-independent.
    """
    gains = torch.tensor(ADC_ANALOG_GAINS, dtype=work_dtype(images), device=images.device).view(1, 3, 1, 1)
    signal = unprocess(images) * gains  # at the ADC's input
    digitised = quantize(signal, ADC_BITS[severity])
    level = signal.mean(1, keepdim=True)
    scale = digitised.mean(1, keepdim=True) / level.clamp_min(1e-12)  # the pixel's digitised level, its own chroma
    return _out(process(signal * scale / gains), images)


@register_corruption("bayer_demosaic", category="sensor", benchmark="sensor", random=False,
                     params={s: {"demosaic": v[0], "photosite_pitch": v[1]} for s, v in BAYER.items()})
def bayer_demosaic(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """An RGGB colour-filter array with a cheap bilinear demosaic, on a sensor with 1 (s1) to 2.5 (s5) image pixels
    per photosite, i.e. a lower-resolution sensor whose output the camera upscales bilinearly.

    Zipper and false-colour edges, softer and half-resolution colour. The light falling on a photosite is the
    area average of the image over it. The pitch is in pixels at 224 and scales with s = min(H, W) / 224 (at
    least 1).
    """
    method, pitch = BAYER[severity]
    pitch = max(1.0, pitch * size_scale(images))
    raw = unprocess(images)
    h, w = raw.shape[-2:]
    if pitch > 1.0:
        raw = F.interpolate(raw, size=(max(2, round(h / pitch)), max(2, round(w / pitch))), mode="area")
    rgb = DEMOSAIC[method](mosaic(raw))
    if pitch > 1.0:
        rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False)
    return _out(process(rgb), images)


# ------------------------------------------------------------------------------------------------------ optics


@register_corruption("vignetting", category="sensor", benchmark="sensor", random=False,
                     params={s: {"corner_stops": v[0], "image_circle": v[1], "circle_edge": VIGNETTE_EDGE}
                             for s, v in VIGNETTE.items()})
def vignetting(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Lens light falloff: natural vignetting (1 + a·r²)^-2 (the cos⁴ law, r = distance from the centre /
    half-diagonal, a chosen so the corners lose 2.5-3.7 stops, as fast primes do wide open on full frame) and, from
    severity 3, mechanical vignetting by an image circle smaller than the sensor (radius 0.95-0.8 half-diagonals,
    smoothstep edge 0.15 wide: a lens made for a smaller sensor, or a hood or adapter in the way). Applied to the
    light, before the sensor.

    Relative to the image, so the same at any size.
    """
    stops, circle = VIGNETTE[severity]
    raw = unprocess(images)
    h, w = raw.shape[-2:]
    u, v = pixel_coordinates(h, w, raw)
    r2 = (u * u + v * v) / half_diagonal(h, w) ** 2
    a = 2.0 ** (stops / 2.0) - 1.0
    transmission = (1.0 + a * r2) ** -2
    if circle is not None:
        t = ((circle - r2.sqrt()) / VIGNETTE_EDGE).clamp(0.0, 1.0)
        transmission = transmission * t * t * (3.0 - 2.0 * t)
    return _out(process(raw * transmission.unsqueeze(1)), images)


@register_corruption("chromatic_aberration", category="sensor", benchmark="sensor", random=False,
                     params={s: {"magnification_difference": v} for s, v in CHROMATIC_ABERRATION.items()})
def chromatic_aberration(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Lateral chromatic aberration: the lens images red 0.5-6 % larger and blue as much smaller than green, so
    colour fringes grow toward the corners. A stress test beyond real lenses, whose worst is about 0.15 % (no real
    lens costs 10 points). Relative magnification, so displacements scale with the image."""
    a = CHROMATIC_ABERRATION[severity]
    raw = unprocess(images)
    factors = torch.tensor([1.0 + a, 1.0, 1.0 - a], dtype=raw.dtype, device=raw.device)
    return _out(process(radial_scale(raw, factors)), images)


@register_corruption("lens_distortion", category="sensor", benchmark="sensor", random=False,
                     params={s: {"barrel_k": v} for s, v in BARREL_K.items()})
def lens_distortion(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Barrel distortion of a cheap wide-angle lens: an image point at normalised radius ρ (half-diagonal = 1) is
    seen at the radius where ρ_src = ρ·(1 + k ρ²) / (1 + k), corners fixed, so the centre bulges and straight lines
    bow. k = 0.1-1 (at k = 1 the centre is magnified 2x). Relative to the image, so the same at any size.
    """
    k = BARREL_K[severity]
    raw = unprocess(images)
    h, w = raw.shape[-2:]
    u, v = pixel_coordinates(h, w, raw)
    rho2 = (u * u + v * v) / half_diagonal(h, w) ** 2
    factor = (1.0 + k * rho2) / (1.0 + k)
    return _out(process(remap(raw, u * factor, v * factor)), images)


@register_corruption("rolling_shutter", category="sensor", benchmark="sensor", random=True,
                     params={s: {"skew": v[0], "wobble": v[1], "exposure_over_readout": ROLLING_SHUTTER_EXPOSURE_RATIO}
                             for s, v in ROLLING_SHUTTER.items()})
def rolling_shutter(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A rolling shutter read out top to bottom while the camera pans and vibrates: each row is shifted
    horizontally by skew·(row position) plus a sinusoidal wobble (jello), and smeared by the pan during the
    row's exposure (1/8 of the readout time).

    Random per image: pan direction, wobble frequency (1.5-3 cycles per frame) and phase. Skew, wobble and smear
    are fractions of the width, so they scale with the image.
    """
    skew, wobble = ROLLING_SHUTTER[severity]
    raw = unprocess(images)
    n, _, h, w = raw.shape
    direction = torch.where(rng.uniform(seeds, (1,), stream=0) < 0.5, -1.0, 1.0).to(raw).view(n, 1, 1)
    freq = (1.5 + 1.5 * rng.uniform(seeds, (1,), stream=1)).to(raw).view(n, 1, 1)
    phase = (2.0 * math.pi * rng.uniform(seeds, (1,), stream=2)).to(raw).view(n, 1, 1)
    u, v = pixel_coordinates(h, w, raw)
    t = v / h  # readout time of the row, -0.5 .. 0.5
    shift = w * (direction * skew * t + wobble * torch.sin(2.0 * math.pi * freq * t + phase))  # (N, H, W)
    smear = direction * skew * w * ROLLING_SHUTTER_EXPOSURE_RATIO
    acc = torch.zeros_like(raw)
    for k in range(ROLLING_SHUTTER_SMEAR_TAPS):
        frac = k / (ROLLING_SHUTTER_SMEAR_TAPS - 1) - 0.5
        acc += remap(raw, u - shift - frac * smear, v.expand(n, h, w))
    return _out(process(acc / ROLLING_SHUTTER_SMEAR_TAPS), images)


# ------------------------------------------------------------------------------------------------- processing


def white_balance_gain_error(mired: float) -> torch.Tensor:
    """(3,) float64 raw gain error, green = 1, of a camera balanced for daylight under a light ``mired`` warmer (a
    warm cast); its inverse is the reverse mistake (balanced for that light, shooting in daylight: a cool cast)."""
    warm_k = 1e6 / (1e6 / WHITE_BALANCE_DAYLIGHT_K + mired)
    return illuminant_camera_rgb(warm_k) / illuminant_camera_rgb(WHITE_BALANCE_DAYLIGHT_K)


@register_corruption("white_balance_error", category="sensor", benchmark="sensor", random=True,
                     params={s: {"mired": v, "red_blue_ratio": round(float(white_balance_gain_error(v)[0]
                                                                              / white_balance_gain_error(v)[2]), 3)}
                             for s, v in WHITE_BALANCE_MIRED.items()})
def white_balance_error(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """A wrong white balance: the camera balances for a light 50-250 mired (1e6 / K) away from the one in the scene,
    along the black-body locus, so the picture takes a warm or cool tint (at random per image).

    Range: in raw, 50 mired (s1) is ~6 deg of angular error, a typical auto-white-balance miss (simple statistical
    AWB such as grey world errs by about 4-6 deg in median, 10-15 deg in its worst quarter, on the Gehler-Shi and
    NUS benchmarks); 100-150 (s2-s3, 11-16 deg) are such worst cases; 200 (s4, 21 deg) is D65 vs CIE illuminant
    A, a daylight preset under tungsten light or the reverse; 250 (s5) is daylight vs 2500 K, the warm end of a
    camera's Kelvin scale. The gain error is the ratio of the camera's raw response to the two lights
    (:func:`white_balance_gain_error`): red/blue 1.4x (s1) to 5.1x (s5); D65 vs A is 3.4-4x for each of Brooks et
    al.'s four cameras. A 16x red/blue error (2 stops on each) clips two channels in ~40 % of a photo's pixels
    (1.4 % clean): flat blue or orange planes instead of a tint; at s5 here it is 4 %.

    Highlights: the gains stay referred to green, as a camera's are, so exposure is unchanged (normalising them to
    <= 1 would avoid every clip but darken the image by 0.6-2 stops, which a camera's metering does not do). They
    scale raw that did not saturate, so the balanced values go through the colour matrix unclipped and only the
    output encoding clips (``process(clip_balanced=False)``): the brightest tinted tones fade toward white, a
    cool cast's through cyan and a warm one's through yellow, as in a camera JPEG, instead of being cut before
    the matrix and bent in hue by its negative terms. Pointwise, size-independent.
    """
    raw = unprocess(images)
    sign = torch.where(rng.uniform(seeds, (1,), stream=0) < 0.5, -1.0, 1.0).to(raw).view(-1, 1)
    error = white_balance_gain_error(WHITE_BALANCE_MIRED[severity]).log().to(raw).view(1, 3)
    cam = DEFAULT_CAMERA
    gains = torch.tensor([cam.red_gain, 1.0, cam.blue_gain], dtype=raw.dtype, device=raw.device)
    gains = gains * torch.exp(sign * error)
    return _out(process(raw, wb_gains=gains, clip_balanced=False), images)


@register_corruption("oversharpening", category="sensor", benchmark="sensor", random=False,
                     params={s: {"amount": v[0], "sigma": v[1]} for s, v in SHARPEN.items()})
def oversharpening(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Aggressive sharpening of the finished, downsized image (a camera's, phone gallery's or image server's unsharp
    mask): x + amount·(Y - Gaussian(Y, sigma)) on luma (BT.601 Y), amount 1-5, giving bright and dark halos along
    edges. The image is already the processed output, so the effect is applied to it directly. Sigma (pixels at
    224) scales with s."""
    amount, sigma = SHARPEN[severity]
    x = images.to(work_dtype(images))
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    luma = (x * weights).sum(1, keepdim=True)
    detail = luma - gaussian_filter(luma, sigma * size_scale(images), mode="nearest")
    return _out(quantize(x + amount * detail, DEFAULT_CAMERA.output_bits), images)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    from corruptions.digital import jpeg_round_trip

    return jpeg_round_trip(quantize(images, 8), quality)


@register_corruption("double_jpeg", category="sensor", benchmark="sensor", random=False,
                     params={s: {"camera_quality": v[0], "resave_quality": v[1], "grid_shift": DOUBLE_JPEG_SHIFT}
                             for s, v in DOUBLE_JPEG.items()})
def double_jpeg(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """The camera's JPEG (quality 90-70), then a re-save at a lower quality (75-30) after a 4-pixel crop (as a
    messaging app or editor does), so the two 8x8 block grids are misaligned and both sets of artefacts survive.

    JPEG blocks are 8 pixels at any size, so quality and shift are size-independent. JPEG coding runs on CPU
    (libjpeg). A side of at most 4 px (nothing would survive the crop) is first extended by 4 edge-replicated pixels
    before it, which the crop then removes: the image itself is coded twice on misaligned grids, as at larger sizes.
    """
    q1, q2 = DOUBLE_JPEG[severity]
    d = DOUBLE_JPEG_SHIFT
    top, left = (d if side <= d else 0 for side in images.shape[-2:])
    x = images.to(work_dtype(images))
    if top or left:
        x = F.pad(x, (left, 0, top, 0), mode="replicate")
    first = _jpeg(x, q1)
    h, w = x.shape[-2:]
    cropped = F.pad(first[..., d:, d:], (0, d, 0, d), mode="replicate")
    second = _jpeg(cropped, q2)
    out = F.pad(second[..., : h - d, : w - d], (d, 0, d, 0), mode="replicate")
    return _out(out[..., top:, left:], images)
