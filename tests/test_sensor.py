"""Sensor suite (issue 4): the camera pipeline's identity, and the corruption contract for every sensor corruption."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import corruptions
import corruptions.sensor  # noqa: F401  (registers the sensor corruptions)
from corruptions import camera, derive_seeds, get_corruption, list_corruptions
from conftest import psnr, reference_crop, seeds_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import sensor_artifacts  # noqa: E402

SENSOR = tuple(list_corruptions("sensor"))
SEVERITIES = (1, 2, 3, 4, 5)


def synthetic(n: int = 2, h: int = 72, w: int = 96) -> torch.Tensor:
    """Smooth ramps, saturated primaries, black, white and random texture in one batch."""
    g = torch.Generator().manual_seed(0)
    y = torch.linspace(0, 1, h).view(1, h, 1).expand(1, h, w)
    x = torch.linspace(0, 1, w).view(1, 1, w).expand(1, h, w)
    ramp = torch.cat([x, y, 1 - x * y], 0)
    img = torch.rand(n, 3, h, w, generator=g)
    img[0] = ramp
    img[:, :, :8, :8] = 0.0
    img[:, :, :8, 8:16] = 1.0
    for k in range(3):
        patch = torch.zeros(3, 8, 8)
        patch[k] = 1.0
        img[:, :, 8:16, 8 * k:8 * k + 8] = patch
    return img


# ----------------------------------------------------------------------------------------- camera pipeline


def test_there_are_at_least_ten_sensor_corruptions_with_five_severities():
    assert len(SENSOR) >= 10, SENSOR
    for name in SENSOR:
        c = get_corruption(name)
        assert c.category == "sensor"
        assert sorted(c.params) == list(SEVERITIES), name


def test_unprocess_then_process_is_identity_on_samples(sample_batch):
    out = camera.process(camera.unprocess(sample_batch))
    assert psnr(out, sample_batch) >= 40.0
    # the inputs are 8-bit levels: after the camera's 8-bit output quantisation they come back exactly
    assert torch.equal(torch.round(out * 255), torch.round(sample_batch * 255))


def test_unprocess_then_process_is_identity_on_synthetic_image():
    img = synthetic()
    assert psnr(camera.process(camera.unprocess(img)), img) >= 40.0
    assert psnr(camera.process(camera.unprocess(img), output_bits=None), img) >= 80.0


def test_unprocess_is_linear_raw_with_headroom():
    white = torch.ones(1, 3, 4, 4)
    raw = camera.unprocess(white)[0, :, 0, 0]
    cam = camera.DEFAULT_CAMERA
    expected = torch.tensor([1 / cam.red_gain, 1.0, 1 / cam.blue_gain]) / cam.brightness_gain
    assert torch.allclose(raw, expected, atol=1e-5)
    # linear: half the display value is much less than half the raw value (gamma and tone curve undone)
    grey = camera.unprocess(torch.full((1, 3, 2, 2), 0.5))[0, 1, 0, 0]
    assert 0.1 < grey.item() < 0.25


def test_smoothstep_inverse():
    y = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert torch.allclose(camera.smoothstep(camera.inverse_smoothstep(y)), y, atol=1e-12)


def test_mosaic_keeps_one_colour_per_photosite_and_demosaic_restores_flat_colour():
    raw = torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1).expand(2, 3, 6, 8).contiguous()
    cfa = camera.mosaic(raw)
    assert cfa.shape == (2, 1, 6, 8)
    assert cfa[0, 0, 0, 0] == 0.2 and cfa[0, 0, 0, 1] == 0.5 and cfa[0, 0, 1, 0] == 0.5 and cfa[0, 0, 1, 1] == 0.7
    for method, fn in camera.DEMOSAIC.items():
        assert torch.allclose(fn(cfa), raw, atol=1e-6), method
    # odd sizes work too
    odd = camera.mosaic(torch.rand(1, 3, 7, 9))
    assert camera.demosaic_nearest(odd).shape == (1, 3, 7, 9)
    assert camera.demosaic_bilinear(odd).shape == (1, 3, 7, 9)


def test_bilinear_demosaic_keeps_the_measured_samples():
    raw = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    cfa = camera.mosaic(raw)
    rgb = camera.demosaic_bilinear(cfa)
    masks = camera.bayer_masks(10, 12, raw)
    assert torch.allclose((rgb * masks).sum(1, keepdim=True), cfa, atol=1e-6)


# ------------------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize("name", SENSOR)
def test_range_finite_shape_and_no_in_place_change(name, sample_batch):
    before = sample_batch.clone()
    for severity in SEVERITIES:
        out = get_corruption(name)(sample_batch, severity, seeds_for(name, severity, 4))
        assert out.shape == sample_batch.shape and out.dtype == sample_batch.dtype
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out.data_ptr() != sample_batch.data_ptr()
    assert torch.equal(sample_batch, before)


@pytest.mark.parametrize("name", SENSOR)
def test_raw_function_does_not_modify_its_input(name, sample_batch):
    """The module function itself (not only the registry wrapper) leaves its input alone."""
    x = sample_batch.clone()
    get_corruption(name).fn(x, 3, seeds_for(name, 3, 4))
    assert torch.equal(x, sample_batch)


@pytest.mark.parametrize("name", SENSOR)
def test_deterministic_and_independent_of_batch_composition(name, sample_batch):
    fn = get_corruption(name)
    seeds = seeds_for(name, 4, 4)
    full = fn(sample_batch, 4, seeds)
    assert torch.equal(full, fn(sample_batch, 4, seeds)), "same seeds must give identical output"
    for i in range(4):
        single = fn(sample_batch[i:i + 1], 4, seeds[i:i + 1])
        assert torch.equal(single[0], full[i]), f"image {i} differs between batch size 1 and 4"
    order = torch.tensor([2, 0, 3, 1])
    shuffled = fn(sample_batch[order], 4, seeds[order])
    assert torch.equal(shuffled, full[order]), "shuffling the batch must only permute the outputs"


@pytest.mark.parametrize("name", [n for n in SENSOR if get_corruption(n).random])
def test_random_corruptions_depend_on_the_seed(name, sample_batch):
    fn = get_corruption(name)
    a = fn(sample_batch, 3, seeds_for(name, 3, 4, run_seed=0))
    b = fn(sample_batch, 3, seeds_for(name, 3, 4, run_seed=1))
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in SENSOR if not get_corruption(n).random])
def test_deterministic_corruptions_ignore_the_seed(name, sample_batch):
    fn = get_corruption(name)
    a = fn(sample_batch[:2], 3, torch.tensor([1, 2]))
    b = fn(sample_batch[:2], 3, torch.tensor([7, 9]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", SENSOR)
def test_mean_change_grows_with_severity(name, sample_batch):
    seeds = seeds_for(name, 0, 4)  # the same seeds at every severity: only the strength changes
    changes = [(get_corruption(name)(sample_batch, s, seeds) - sample_batch).abs().mean().item() for s in SEVERITIES]
    assert changes[0] > 1e-3, changes
    assert all(b > a for a, b in zip(changes, changes[1:])), changes


@pytest.mark.parametrize("name", SENSOR)
def test_runs_at_a_non_224_size(name):
    img = synthetic(n=2, h=96, w=160)
    for severity in (1, 5):
        out = get_corruption(name)(img, severity, seeds_for(name, severity, 2))
        assert out.shape == img.shape and torch.isfinite(out).all()
        assert (out - img).abs().mean() > 1e-3


def test_geometric_corruptions_keep_the_centre_in_place():
    """Optics act about the optical axis: a centred spot stays centred under distortion and aberration."""
    img = torch.zeros(1, 3, 65, 65)
    img[..., 30:35, 30:35] = 1.0
    for name in ("lens_distortion", "chromatic_aberration", "vignetting"):
        out = get_corruption(name)(img, 3, torch.tensor([0]))
        assert out[0, 1, 32, 32] > 0.5, name
        assert out[0, :, :10, :10].max() < 0.1, name


def test_overexposure_clips_highlights_to_white_not_magenta():
    img = torch.full((1, 3, 8, 8), 0.8)
    out = get_corruption("overexposure")(img, 5, torch.tensor([0]))
    assert torch.allclose(out, torch.ones_like(out))


def test_sensor_noise_is_signal_dependent():
    """Shot noise: brighter raw signal, larger absolute noise in raw, as photon statistics require."""
    dark, bright = torch.full((1, 3, 64, 64), 0.2), torch.full((1, 3, 64, 64), 0.8)
    raw_dark = corruptions.sensor.photon_noise(camera.unprocess(dark), torch.tensor([3]), 1000.0)
    raw_bright = corruptions.sensor.photon_noise(camera.unprocess(bright), torch.tensor([3]), 1000.0)
    assert raw_bright[0, 1].std() > 1.5 * raw_dark[0, 1].std()


def grey_ramp(n: int = 256) -> torch.Tensor:
    """A neutral ramp from black to white along the width, (1, 3, 2, n)."""
    return torch.linspace(0, 1, n).view(1, 1, 1, n).expand(1, 3, 2, n).contiguous()


def _hue_degrees(rgb: torch.Tensor) -> torch.Tensor:
    """Hue angle (0-360) of (3, n) colours, from the opponent axes of HSV's hexcone (atan2 form)."""
    r, g, b = rgb
    return torch.rad2deg(torch.atan2(math.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0


@pytest.mark.parametrize("severity", SEVERITIES)
def test_white_balance_error_tints_a_grey_ramp_without_posterising(severity):
    """A wrong white balance tints: a grey ramp stays a smooth ramp of one hue, every channel keeps many levels and
    rises with the input. (A 16x red/blue error left a channel stuck at 0 for the whole ramp.)"""
    fn = get_corruption("white_balance_error")
    ramp = grey_ramp()
    casts = set()
    for seed in range(8):  # both directions occur among these seeds
        out = fn(ramp, severity, torch.tensor([seed]))[0, :, 0, :]
        q = torch.round(out * 255)
        assert (q[:, 1:] >= q[:, :-1]).all(), "every channel rises with the grey level"
        assert min(len(torch.unique(c)) for c in q) >= 64, [len(torch.unique(c)) for c in q]
        assert len(torch.unique(q.T, dim=0)) >= 240
        visible = out[:, 26:]  # above ~10 % grey, where the hue is defined
        warm = bool((visible[0] > visible[2]).all())
        assert warm or bool((visible[2] > visible[0]).all()), "one cast along the whole ramp"
        hue = _hue_degrees(visible)
        hue = (hue - hue[0] + 180.0) % 360.0 - 180.0  # relative to the darkest visible step
        assert hue.max() - hue.min() <= 45.0, (hue.min().item(), hue.max().item())
        casts.add(warm)
    assert casts == {True, False}


def test_white_balance_error_range_is_a_camera_range():
    """Severities grow, along the black-body locus, up to daylight vs 2500 K: a few-x red/blue error, not 16x."""
    params = get_corruption("white_balance_error").params
    ratios = [params[s]["red_blue_ratio"] for s in SEVERITIES]
    assert all(b > a for a, b in zip(ratios, ratios[1:])), ratios
    assert 1.2 < ratios[0] and ratios[-1] < 6.0, ratios
    assert torch.allclose(corruptions.sensor.white_balance_gain_error(0.0), torch.ones(3, dtype=torch.float64))
    # D65 vs CIE illuminant A (2856 K), the daylight/tungsten mistake: 3.4-4x in Brooks et al.'s cameras
    a = corruptions.sensor.white_balance_gain_error(1e6 / 2856 - 1e6 / corruptions.sensor.WHITE_BALANCE_DAYLIGHT_K)
    assert 3.0 < float(a[0] / a[2]) < 4.5 and a[1] == 1.0


@pytest.mark.parametrize("severity", SEVERITIES)
def test_low_bit_depth_bands_a_grey_ramp_but_keeps_it_neutral(severity):
    """Coarse ADC steps band the tones, more coarsely in the shadows, but a grey stays grey: no false colour."""
    out = get_corruption("low_bit_depth")(grey_ramp(1024), severity, torch.tensor([0]))[0, :, 0, :]
    q = torch.round(out * 255)
    assert (q[0] - q[1]).abs().max() <= 1 and (q[2] - q[1]).abs().max() <= 1
    levels = len(torch.unique(q[1]))
    assert 3 <= levels <= 64, levels
    assert len(torch.unique(q[1, :512])) < len(torch.unique(q[1, 512:])), "the dark half has the fewer levels"


def test_low_bit_depth_levels_fall_with_severity():
    fn = get_corruption("low_bit_depth")
    levels = [len(torch.unique(torch.round(fn(grey_ramp(1024), s, torch.tensor([0])) * 255))) for s in SEVERITIES]
    assert all(b < a for a, b in zip(levels, levels[1:])), levels


# ------------------------------------------------------------------------------------------------ suites


def test_sensor_suite_lists_every_sensor_corruption():
    suite = OmegaConf.load(REPO / "conf" / "suite" / "sensor.yaml")
    assert list(suite.corruptions) == list(SENSOR)
    assert suite.include_clean and not suite.faithful_jpeg and list(suite.severities) == list(SEVERITIES)


def test_all_suite_is_imagenet_c_then_sensor():
    suite = OmegaConf.load(REPO / "conf" / "suite" / "all.yaml")
    expected = list(corruptions.IMAGENET_C) + list(corruptions.IMAGENET_C_EXTRA) + list(SENSOR)
    assert list(suite.corruptions) == expected
    assert suite.include_clean and not suite.faithful_jpeg
    for name in suite.corruptions:
        get_corruption(name)


# ------------------------------------------------------------------------------- flat saturated regions (issue 14)


def natural_like(n: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
    """Random-phase colour images with a natural-image-like falling spectrum (amplitude ~ 1/f^1.25): smooth regions
    and texture at every scale, luminance and chroma correlated across channels, few clipped pixels."""
    g = torch.Generator().manual_seed(seed)
    fy, fx = torch.fft.fftfreq(size).view(-1, 1), torch.fft.fftfreq(size).view(1, -1)
    amplitude = (fx * fx + fy * fy).sqrt().clamp_min(1.0 / size) ** -1.25
    field = torch.fft.ifft2(torch.fft.fft2(torch.randn(n, 3, size, size, generator=g)) * amplitude).real
    field = field / field.flatten(1).std(1).view(n, 1, 1, 1)
    lum, chroma = field[:, :1], field[:, 1:]
    rgb = torch.cat([lum + 0.3 * chroma[:, :1], lum - 0.15 * chroma.sum(1, keepdim=True), lum + 0.3 * chroma[:, 1:]], 1)
    return (0.45 + 0.2 * rgb).clamp(0.0, 1.0)


@pytest.fixture(scope="module")
def sample_dozen(sample_root) -> torch.Tensor:
    """Twelve real photos spread over the sample set (every 40th from the 21st), (12, 3, 224, 224) in [0, 1]: enough
    that their mean is a fair estimate of the sample set's, unlike the four of ``sample_batch``."""
    files = sorted(sample_root.glob("*/*.JPEG"))[20::40][:12]
    return torch.from_numpy(np.stack([reference_crop(f) for f in files])).permute(0, 3, 1, 2).float().div(255.0)


def test_flat_saturated_pixels_are_clipped_and_flat():
    """The definition on a hand-made image: only a clipped channel inside a flat 5x5 window counts."""
    g = torch.Generator().manual_seed(0)
    img = 0.3 + 0.4 * torch.rand(1, 3, 20, 20, generator=g)  # texture, nothing clipped
    img[..., :10, :10] = 1.0  # a flat white patch
    img[..., :10, 10:] = 0.5  # flat but not clipped
    img[:, 0, 10:, :10] = 1.0  # red clipped, green and blue textured: a tint that kept its texture
    mask = sensor_artifacts.flat_saturated(img)[0]
    assert mask[:8, :8].all() and mask[:10, :10].float().mean() > 0.6
    assert not mask[:, 10:].any() and not mask[10:].any()
    assert not mask[8:10, :10].all()  # the window reaches the texture below the patch


def test_flat_saturated_metric_flags_clipping_and_posterisation(sample_dozen):
    """The metric can fail: posterising to pure primaries or blowing out three stops adds far more than 20 %."""
    added = sensor_artifacts.added_flat_saturated
    for img in (sample_dozen, natural_like()):
        assert added(img, img).max() == 0.0
        assert added(torch.round(img), img).mean() > sensor_artifacts.LIMIT
    assert added((sample_dozen * 3.0).clamp(0.0, 1.0), sample_dozen).mean() > sensor_artifacts.LIMIT


@pytest.mark.parametrize("name", SENSOR)
def test_severity_5_adds_at_most_20_percent_flat_saturated_pixels(name, sample_dozen):
    """Issue 14: no sensor corruption at severity 5 leaves more than 20 % of a natural photo's pixels in flat,
    saturated regions that the clean photo does not have (mean over real photos; each synthetic one)."""
    fn = get_corruption(name)
    real = sensor_artifacts.added_flat_saturated(fn(sample_dozen, 5, seeds_for(name, 5, len(sample_dozen))),
                                                 sample_dozen)
    assert real.mean() <= sensor_artifacts.LIMIT, real.tolist()
    synth = natural_like()
    added = sensor_artifacts.added_flat_saturated(fn(synth, 5, seeds_for(name, 5, len(synth))), synth)
    assert added.max() <= sensor_artifacts.LIMIT, added.tolist()
