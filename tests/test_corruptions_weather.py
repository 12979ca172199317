"""Weather corruptions (snow, frost, fog, spatter) against the ImageNet-C reference (spec §2.4, §3.8-3.10, §4.3).

Two kinds of evidence: exact checks, where a numpy/OpenCV version of the reference is fed our own random draws
(fog's fractal, the fog/snow/frost/spatter compositions, spatter's OpenCV stages), and statistical checks of
the mean absolute change from the clean image against ``imagecorruptions`` (imports of imagecorruptions-imaug,
the runnable yardstick) with numpy seeded — both sides random, so each severity averages several draws per image.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import cv, get_corruption, list_corruptions, rng
from corruptions import weather as W

cv2 = pytest.importorskip("cv2")
ic = pytest.importorskip("imagecorruptions")
from skimage.filters import gaussian as sk_gaussian  # noqa: E402  (the reference's own blur)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mk224  # noqa: E402  (the original generator's frost, numpy; also the fidelity benchmark's yardstick)

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("snow", "frost", "fog", "spatter")
SEVERITIES = (1, 2, 3, 4, 5)


def _seeds(n: int, offset: int = 0) -> torch.Tensor:
    return torch.arange(n, dtype=torch.int64) * 7919 + 17 + offset


def _mean_abs_change_ours(fn, batch: torch.Tensor, severity: int, repeats: int) -> float:
    images = batch.repeat(repeats, 1, 1, 1)
    out = fn(images, severity, _seeds(images.shape[0], 100_000 * severity))
    return float((out - images).abs().mean()) * 255.0


def _mean_abs_change_numpy(corrupt, images_uint8: np.ndarray, severity: int, repeats: int) -> float:
    """corrupt(uint8 HWC image, severity) -> float 0..255; numpy's global RNG seeded once per severity."""
    np.random.seed(severity)
    changes = [np.abs(np.clip(corrupt(im, severity), 0, 255).astype(np.float64) - im).mean()
               for _ in range(repeats) for im in images_uint8]
    return float(np.mean(changes))


def _reference(name: str):
    fn = getattr(ic, name)
    return lambda im, severity: np.asarray(fn(Image.fromarray(im), severity), dtype=np.float64)


# ------------------------------------------------------------------------------------------ contract


def test_registered_as_weather_with_reference_parameters():
    assert set(NAMES) <= set(list_corruptions("weather"))
    for name in NAMES:
        c = get_corruption(name)
        assert c.category == "weather" and c.random and c.runs_on == "any"
        assert sorted(c.params) == list(SEVERITIES)
    assert get_corruption("snow").params[3]["zoom"] == 4.0
    assert get_corruption("fog").params[5] == {"strength": 3.0, "decay": 1.4}
    assert [get_corruption("spatter").params[s]["mode"] for s in SEVERITIES] == ["water"] * 3 + ["mud"] * 2


@pytest.mark.parametrize("name", NAMES)
def test_every_severity_in_range_finite_and_input_untouched(name, sample_batch):
    fn = getattr(W, name)
    before = sample_batch.clone()
    for severity in SEVERITIES:
        out = fn(sample_batch, severity, _seeds(4))
        assert out.shape == sample_batch.shape and out.dtype == sample_batch.dtype
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out.data_ptr() != sample_batch.data_ptr()
        assert (out - sample_batch).abs().mean() > 1e-3, f"{name} s{severity} left the images unchanged"
    assert torch.equal(sample_batch, before)


@pytest.mark.parametrize("name,severity", [("snow", 5), ("frost", 2), ("fog", 3), ("spatter", 2), ("spatter", 5)])
def test_independent_of_batch_size_and_order(name, severity, sample_batch):
    fn = getattr(W, name)
    seeds = _seeds(4)
    full = fn(sample_batch, severity, seeds)
    singles = torch.cat([fn(sample_batch[i:i + 1], severity, seeds[i:i + 1]) for i in range(4)])
    order = torch.tensor([2, 0, 3, 1])
    shuffled = fn(sample_batch[order], severity, seeds[order])
    torch.testing.assert_close(singles, full, rtol=0, atol=1e-6)
    torch.testing.assert_close(shuffled, full[order], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,severity", [("snow", 3), ("frost", 1), ("fog", 1), ("spatter", 1), ("spatter", 4)])
def test_different_seeds_give_different_corruptions(name, severity, sample_batch):
    fn = getattr(W, name)
    a = fn(sample_batch, severity, _seeds(4))
    b = fn(sample_batch, severity, _seeds(4, offset=1))
    per_image = (a - b).abs().flatten(1).mean(1)
    assert (per_image > 1e-4).all(), per_image


@pytest.mark.parametrize("name", NAMES)
def test_non_224_sizes(name, sample_batch):
    """160x192 (s = 160/224) runs every severity; a tall 64x400 strip forces frost textures to be rescaled to cover."""
    fn = getattr(W, name)
    small = torch.nn.functional.interpolate(sample_batch[:2], size=(160, 192), mode="bilinear", antialias=True)
    for severity in SEVERITIES:
        out = fn(small, severity, _seeds(2))
        assert out.shape == small.shape and torch.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 1 and (out - small).abs().mean() > 1e-3
        torch.testing.assert_close(fn(small[1:], severity, _seeds(2)[1:]), out[1:], rtol=0, atol=1e-6)
    strip = sample_batch[:1, :, :64, :].repeat(1, 1, 1, 2)[..., :400].contiguous()
    out = fn(strip, 5, _seeds(1))
    assert out.shape == strip.shape and torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# ------------------------------------------------------------------------------------------ fog


def numpy_plasma(draw, size: int, decay: float) -> np.ndarray:
    """Spec §2.4 written with explicit modular indices; draw(level, k, cells) -> U[0,1) array (cells, cells)."""
    grid = np.zeros((size, size))
    step, wib, level = size, 100.0, 0
    while step >= 2:
        half, cells = step // 2, size // step
        nxt, prv = (np.arange(cells) + 1) % cells, (np.arange(cells) - 1) % cells
        corner = grid[::step, ::step].copy()
        centre = (corner + corner[nxt] + corner[:, nxt] + corner[nxt][:, nxt]) / 4
        centre += wib * (wib * (2 * draw(level, 0, cells) - 1))
        grid[half::step, half::step] = centre
        top = (centre + centre[prv] + corner + corner[:, nxt]) / 4 + wib * (wib * (2 * draw(level, 1, cells) - 1))
        left = (centre + centre[:, prv] + corner + corner[nxt]) / 4 + wib * (wib * (2 * draw(level, 2, cells) - 1))
        grid[::step, half::step] = top
        grid[half::step, ::step] = left
        step, wib, level = half, wib / decay, level + 1
    grid -= grid.min()
    return grid / grid.max()


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("decay", [2.0, 1.4])
def test_plasma_equals_numpy_diamond_square_on_the_same_draws(decay, dtype, atol):
    """float64 to rounding; float32 (fog's) to its rounding on the map's [0, 1] scale, from its own draws."""
    seeds = _seeds(2)
    ours = W.plasma_fractal(seeds, 64, decay, dtype=dtype).numpy()
    for i in range(2):
        def draw(level, k, cells, i=i):
            return rng.uniform(seeds[i:i + 1], (cells, cells), stream=3 * level + k, dtype=dtype)[0].double().numpy()
        np.testing.assert_allclose(ours[i], numpy_plasma(draw, 64, decay), rtol=0, atol=atol)
    assert ours.min() == 0.0 and np.allclose(ours.reshape(2, -1).max(1), 1.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("decay", [2.0, 1.4])
def test_plasma_statistics_match_numpy_reference(decay, dtype):
    """Mean level, per-map contrast and pixel-to-pixel roughness of 96 maps: ours vs numpy's RNG on §2.4."""
    n = 96
    ours = W.plasma_fractal(_seeds(n), 256, decay, dtype=dtype).double().numpy()
    rs = np.random.RandomState(0)
    ref = np.stack([numpy_plasma(lambda level, k, cells: rs.uniform(size=(cells, cells)), 256, decay)
                    for _ in range(n)])

    def stats(maps):
        return np.array([maps.mean(), maps.std(axis=(1, 2)).mean(), np.abs(np.diff(maps, axis=2)).mean()])

    np.testing.assert_allclose(stats(ours), stats(ref), rtol=0.10)


def test_plasma_roughness_grows_as_decay_falls():
    rough = [np.abs(np.diff(W.plasma_fractal(_seeds(16), 256, d).numpy(), axis=2)).mean() for d in (2.0, 1.7, 1.4)]
    assert rough[0] < rough[1] < rough[2]


def test_fog_formula_on_our_plasma(sample_batch):
    """y = x + t·P (P: top-left 224 of the normalised 256 map), out = clip(y·m/(m + t)) (spec §3.10)."""
    seeds = _seeds(4)
    for severity in (1, 5):
        t, d = W.FOG_PARAMS[severity]["strength"], W.FOG_PARAMS[severity]["decay"]
        plasma = W.plasma_fractal(seeds, 256, d, dtype=W.FOG_PLASMA_DTYPE).double().numpy()[:, None, :224, :224]
        x = sample_batch.double().numpy()
        m = x.max(axis=(1, 2, 3), keepdims=True)
        expected = np.clip((x + t * plasma) * m / (m + t), 0, 1)
        np.testing.assert_allclose(W.fog(sample_batch, severity, seeds).numpy(), expected, rtol=0, atol=1e-5)


def test_fog_mean_abs_change_matches_imagecorruptions(sample_batch, sample_uint8):
    for severity in SEVERITIES:
        ours = _mean_abs_change_ours(W.fog, sample_batch, severity, repeats=16)
        ref = _mean_abs_change_numpy(_reference("fog"), sample_uint8, severity, repeats=16)
        assert ours == pytest.approx(ref, rel=0.10), (severity, ours, ref)


# ------------------------------------------------------------------------------------------ frost


def _frost_textures_numpy() -> list[np.ndarray]:
    folder = importlib.resources.files("imagecorruptions") / "frost"
    return [np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float64) for name in W.FROST_FILES]


def test_frost_textures_come_from_the_installed_package():
    folder = W.frost_texture_dir()
    assert folder.resolve() == (importlib.resources.files("imagecorruptions") / "frost").resolve()
    stack, sizes = W.frost_textures(224, 224, "cpu")
    assert sizes.tolist() == [[600, 900], [315, 560], [315, 560], [350, 527], [495, 660]]  # frost6 unused
    assert torch.equal(stack[1], stack[2])  # frost2 ≡ frost3 pixel-wise (spec §3.9)


def test_frost_missing_textures_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv(W.FROST_DIR_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(FileNotFoundError, match="pip install imagecorruptions-imaug") as err:
        W.frost_texture_dir()
    assert "\n" not in str(err.value)


def test_frost_equals_mk224_blend_on_our_draws(sample_batch, sample_uint8):
    textures = _frost_textures_numpy()
    seeds = _seeds(4, offset=5)
    _, sizes = W.frost_textures(224, 224, "cpu")
    index, top, left = W.frost_crop_positions(seeds, sizes, 224, 224)
    for i in range(4):
        hf, wf = textures[index[i]].shape[:2]
        assert 0 <= top[i] < hf - 224 and 0 <= left[i] < wf - 224
    for severity in (1, 5):
        a, f = W.FROST_PARAMS[severity]["image_weight"], W.FROST_PARAMS[severity]["frost_weight"]
        expected = np.stack([np.clip(a * sample_uint8[i] + f * textures[index[i]][top[i]:top[i] + 224,
                                                                                 left[i]:left[i] + 224], 0, 255)
                             for i in range(4)]).transpose(0, 3, 1, 2) / 255.0
        np.testing.assert_allclose(W.frost(sample_batch, severity, seeds).numpy(), expected, rtol=0, atol=1e-5)


def test_frost_texture_choice_follows_randint5():
    index, _, _ = W.frost_crop_positions(_seeds(5000), torch.tensor([[600, 900]] * 5), 224, 224)
    counts = torch.bincount(index, minlength=5)
    assert counts.numel() == 5 and (counts > 900).all() and (counts < 1100).all()


def test_frost_mean_abs_change_matches_mk224(sample_batch, sample_uint8):
    """Against an MK224 numpy frost, not imagecorruptions: ICI rescales every texture 1.1× (bicubic) before
    cropping and also draws frost6 (randint(6)), which shifts this statistic by a few percent (spec §3.9, §7)."""
    for severity in SEVERITIES:
        ours = _mean_abs_change_ours(W.frost, sample_batch, severity, repeats=64)
        ref = _mean_abs_change_numpy(mk224.frost, sample_uint8, severity, repeats=64)
        assert ours == pytest.approx(ref, rel=0.10), (severity, ours, ref)


# ------------------------------------------------------------------------------------------ snow


def test_snow_composition(sample_batch):
    """Haze with OpenCV gray weights, then + layer + rot180(layer) (spec §3.8 steps 7-8)."""
    seeds = _seeds(4)
    for severity in (1, 4):
        layer = W.snow_layer(seeds, 224, 224, severity).numpy()
        assert np.allclose(layer * 255, np.round(layer * 255)) and layer.min() >= 0 and layer.max() <= 1
        b = W.SNOW_PARAMS[severity]["blend"]
        x = sample_batch.numpy().transpose(0, 2, 3, 1)
        gray = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in x])[..., None]
        hazy = b * x + (1 - b) * np.maximum(x, gray * 1.5 + 0.5)
        flakes = layer.transpose(0, 2, 3, 1)
        expected = np.clip(hazy + flakes + flakes[:, ::-1, ::-1], 0, 1).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(W.snow(sample_batch, severity, seeds).numpy(), expected, rtol=0, atol=1e-5)


def test_snow_mean_abs_change_matches_imagecorruptions(sample_batch, sample_uint8):
    """ICI blurs the unquantised layer and rounds; we follow MK224 (8-bit layer, ImageMagick quantisation)."""
    for severity in SEVERITIES:
        ours = _mean_abs_change_ours(W.snow, sample_batch, severity, repeats=2)
        ref = _mean_abs_change_numpy(_reference("snow"), sample_uint8, severity, repeats=2)
        assert ours == pytest.approx(ref, rel=0.10), (severity, ours, ref)


# ------------------------------------------------------------------------------------------ spatter


def _spatter_layers_numpy(severity: int, n: int = 6) -> np.ndarray:
    """The reference's thresholded liquid layers (skimage Gaussian) computed from our noise fields."""
    p = W.SPATTER_PARAMS[severity]
    noise = W.spatter_noise(_seeds(n, 7 * severity), 224, 224, severity).numpy()[:, 0]
    layers = np.stack([sk_gaussian(z, sigma=p["blob_sigma"]) for z in noise])
    layers[layers < p["threshold"]] = 0
    return layers


def _opencv_water(layer: np.ndarray, intensity: float) -> np.ndarray:
    """The reference's water branch (imagecorruptions ``spatter``, spec §4.3 steps 1-6) with OpenCV."""
    layer8 = (layer * 255).astype(np.uint8)
    dist = cv2.distanceTransform(255 - cv2.Canny(layer8, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
    wet = layer8 * cv2.blur(dist, (3, 3)).astype(np.float32)
    return wet / wet.max() * intensity


def test_spatter_blob_layer_matches_scikit_image():
    for severity in (1, 4):
        ours = W.spatter_layer(_seeds(6, 7 * severity), 224, 224, severity).numpy()[:, 0]
        np.testing.assert_allclose(ours, _spatter_layers_numpy(severity), rtol=0, atol=1e-12)


def test_canny_equals_opencv(sample_uint8):
    """Real photographs exercise every NMS sector and the hysteresis; spatter layers are the actual use."""
    images = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in sample_uint8]
    images += list((_spatter_layers_numpy(2, n=3) * 255).astype(np.uint8))
    for im in images:
        for low, high in ((50, 150), (20, 60)):
            ours = cv.canny_edges(torch.from_numpy(im.astype(np.float32))[None, None], low, high)[0, 0].numpy()
            expected = cv2.Canny(im, low, high) == 255
            assert expected.sum() > 100 and np.array_equal(ours, expected), (low, high)


def test_chamfer_distance_equals_opencv():
    layers = (_spatter_layers_numpy(1, n=3) * 255).astype(np.uint8)
    for layer8 in layers:
        edges = cv2.Canny(layer8, 50, 150)
        mask = torch.from_numpy(edges == 255)[None, None]
        expected = np.minimum(cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5), 20)
        as_cv5 = cv.chamfer_distance(mask, 20.0, fixed_point=False)[0, 0].numpy()
        as_cv34 = cv.chamfer_distance(mask, 20.0)[0, 0].numpy()
        np.testing.assert_allclose(as_cv5, expected, rtol=0, atol=1e-5)  # OpenCV 5 (installed): float weights
        np.testing.assert_allclose(as_cv34, expected, rtol=0, atol=1e-4)  # OpenCV 3.4/4.x: 16.16 fixed point
        assert 0 < (expected == 20).mean() < 1
    no_edges = cv.chamfer_distance(torch.zeros(1, 1, 8, 8, dtype=torch.bool), 20.0)
    assert torch.equal(no_edges, torch.full_like(no_edges, 20.0))


def test_equalize_hist_equals_opencv():
    rs = np.random.RandomState(3)
    images = [rs.randint(0, 256, (64, 80)).astype(np.uint8), (rs.randint(3, 9, (64, 80)) ** 2).astype(np.uint8),
              np.full((64, 80), 17, np.uint8), np.where(rs.rand(64, 80) < 0.9, 20, 7).astype(np.uint8)]
    batch = torch.from_numpy(np.stack(images).astype(np.float64))[:, None]
    ours = cv.equalize_hist(batch)[:, 0].numpy()
    for got, im in zip(ours, images):
        np.testing.assert_array_equal(got, cv2.equalizeHist(im))


def test_water_layer_matches_opencv_pipeline():
    """Same liquid layer through our torch stages and through OpenCV: equal up to rare ±1-level flips that come
    from the chamfer weights (we use MK224-era fixed point, the installed OpenCV 5 uses float)."""
    for severity in (1, 2, 3):
        layers = _spatter_layers_numpy(severity)
        intensity = W.SPATTER_PARAMS[severity]["intensity"]
        ours = W.water_layer(torch.from_numpy(layers)[:, None], intensity)[:, 0].numpy()
        expected = np.stack([_opencv_water(layer, intensity) for layer in layers])
        assert np.abs(ours - expected).mean() < 2e-4 * intensity
        assert (np.abs(ours - expected) > 1e-5).mean() < 0.01


def test_water_layer_without_droplets_is_zero_not_nan():
    out = W.water_layer(torch.zeros(2, 1, 40, 40, dtype=torch.float64), 0.6)
    assert torch.equal(out, torch.zeros_like(out))


def test_spatter_mud_equals_reference_on_our_noise(sample_batch):
    seeds = _seeds(4)
    for severity in (4, 5):
        p = W.SPATTER_PARAMS[severity]
        noise = W.spatter_noise(seeds, 224, 224, severity).numpy()[:, 0]
        x = sample_batch.numpy().transpose(0, 2, 3, 1).astype(np.float64)
        expected = []
        for z, im in zip(noise, x):
            layer = sk_gaussian(z, sigma=p["blob_sigma"])
            layer[layer < p["threshold"]] = 0
            m = sk_gaussian(np.where(layer > p["threshold"], 1, 0).astype(np.float32), sigma=1.5)
            m[m < 0.8] = 0
            expected.append(np.clip(im * (1 - m[..., None]) + m[..., None] * np.array([63, 42, 20]) / 255.0, 0, 1))
        expected = np.stack(expected).transpose(0, 3, 1, 2)
        np.testing.assert_allclose(W.spatter(sample_batch, severity, seeds).numpy(), expected, rtol=0, atol=1e-5)


def test_spatter_mean_abs_change_matches_imagecorruptions(sample_batch, sample_uint8):
    for severity in SEVERITIES:
        ours = _mean_abs_change_ours(W.spatter, sample_batch, severity, repeats=12)
        ref = _mean_abs_change_numpy(_reference("spatter"), sample_uint8, severity, repeats=12)
        assert ours == pytest.approx(ref, rel=0.10), (severity, ours, ref)


@pytest.mark.parametrize("cap", [20.0, 7.3])  # 7.3: not a multiple of 2**-16, so the float64 scan
def test_chamfer_two_raster_passes_equal_the_relaxation(cap):
    """The CPU path (OpenCV's two passes, a row at a time) and the device path (parallel relaxation) both give the
    cheapest path, so the same numbers, with fixed-point and float weights."""
    masks = torch.rand(3, 1, 37, 53, generator=torch.Generator().manual_seed(2)) < 0.01
    masks[0] = False  # no outline at all: the cap everywhere
    weights = [tuple(round(wt * 65536) / 65536 for wt in cv.CHAMFER_WEIGHTS),
               tuple(float(torch.tensor(wt, dtype=torch.float32)) for wt in cv.CHAMFER_WEIGHTS)]
    for costs in weights:
        scan = cv._chamfer_two_pass(masks, cap, *costs)
        relaxed = cv._chamfer_relaxation(masks, cap, *costs)
        assert scan.dtype == torch.float32 and scan.shape == masks.shape
        np.testing.assert_allclose(scan.numpy(), relaxed.numpy(), rtol=0, atol=1e-5)
        assert torch.equal(scan[0], torch.full_like(scan[0], cap)) and (scan[masks] == 0).all()
    fixed = weights[0]
    assert torch.equal(cv._chamfer_two_pass(masks, 20.0, *fixed), cv._chamfer_relaxation(masks, 20.0, *fixed))


def test_spatter_layer_in_float32_is_the_same_liquid():
    """The water path's float32 layer (own float32 draws) has the float64 layer's statistics."""
    seeds = _seeds(16)
    for severity in (1, 3):
        exact = W.spatter_layer(seeds, 224, 224, severity)
        fast = W.spatter_layer(seeds, 224, 224, severity, dtype=torch.float32)
        assert exact.dtype == torch.float64 and fast.dtype == torch.float32
        threshold = W.SPATTER_PARAMS[severity]["threshold"]
        assert ((fast == 0) | (fast >= threshold)).all()
        assert float((fast > 0).float().mean()) == pytest.approx(float((exact > 0).float().mean()), rel=0.05)
        assert float(fast.mean()) == pytest.approx(float(exact.mean()), rel=0.05)
