"""Blur corruptions (spec §3.4-3.7, §4.2) against imagecorruptions (the reference yardstick) and the contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import corruptions
from corruptions.blur import (
    DEFOCUS,
    GAUSSIAN_SIGMA,
    ZOOM,
    disk_kernel,
    glass_offsets,
    glass_shuffle,
    zoom_factors,
)
from corruptions.cv import filter2d_reflect101
from corruptions.filters import clipped_zoom, gaussian_filter
from conftest import psnr  # noqa: E402

imagecorruptions = pytest.importorskip("imagecorruptions")

BLUR = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
RANDOM = ("glass_blur", "motion_blur")
SEVERITIES = (1, 2, 3, 4, 5)


def run(name: str, images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    return corruptions.get_corruption(name).fn(images, severity, seeds)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """What the generator saves: trunc(255·x) (spec §1.3), as (N, H, W, 3)."""
    return (images.permute(0, 2, 3, 1) * 255.0).to(torch.uint8).numpy()




@pytest.fixture(scope="module")
def seeds4() -> torch.Tensor:
    return corruptions.derive_seeds(0, torch.arange(4), "blur-test", 1)


def test_registered_as_blur_category():
    assert [n for n in corruptions.list_corruptions("blur") if n in BLUR] == list(BLUR)
    for name in BLUR:
        entry = corruptions.get_corruption(name)
        assert entry.random == (name in RANDOM) and set(entry.params) == set(SEVERITIES)


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", ["defocus_blur", "gaussian_blur", "zoom_blur"])
def test_deterministic_blurs_match_reference(sample_uint8, sample_batch, seeds4, name, severity):
    ours = to_uint8(run(name, sample_batch, severity, seeds4))
    ref = np.stack([imagecorruptions.corrupt(im, severity=severity, corruption_name=name) for im in sample_uint8])
    assert psnr(ours, ref) >= 35.0


def mean_change(corrupted: np.ndarray, clean: np.ndarray) -> float:
    return float(np.mean(np.abs(corrupted.astype(np.float64) - clean.astype(np.float64))))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_motion_blur_strength_matches_reference(sample_uint8, sample_batch, seeds4, severity):
    """Random angle: compare the mean absolute change from the clean image, not pixels."""
    ours = to_uint8(run("motion_blur", sample_batch, severity, seeds4))
    np.random.seed(severity)
    ref = np.stack([imagecorruptions.corrupt(im, severity=severity, corruption_name="motion_blur")
                    for im in sample_uint8])
    expected = mean_change(ref, sample_uint8)
    assert mean_change(ours, sample_uint8) == pytest.approx(expected, rel=0.10)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_glass_blur_strength_matches_reference(sample_uint8, sample_batch, seeds4, severity):
    """imagecorruptions-imaug's numba loop has the reference's semantics (spec §3.5); seeded per image."""
    ours = to_uint8(run("glass_blur", sample_batch, severity, seeds4))
    ref = np.stack([imagecorruptions.corrupt(im, severity=severity, corruption_name="glass_blur", seed=100 + i)
                    for i, im in enumerate(sample_uint8)])
    expected = mean_change(ref, sample_uint8)
    assert mean_change(ours, sample_uint8) == pytest.approx(expected, rel=0.10)


@pytest.mark.parametrize("delta,iterations,height,width", [(1, 2, 12, 15), (2, 1, 20, 17), (3, 2, 16, 16),
                                                           (4, 3, 23, 26)])
def test_glass_shuffle_equals_the_reference_loop(delta, iterations, height, width):
    """The parallel chain resolution gives exactly what the reference's numpy tuple "swap" loop gives."""
    seeds = torch.tensor([5, 99, 12345])
    pixels = torch.randint(0, 256, (3, 3, height, width), generator=torch.Generator().manual_seed(delta)).double()
    dx, dy = glass_offsets(seeds, height, width, delta, iterations)
    ours = glass_shuffle(pixels, dx, dy, delta)
    for n in range(3):
        x = pixels[n].permute(1, 2, 0).numpy().copy()  # (H, W, C): rows are views, as in the reference
        for k in range(iterations):
            for h in range(height - delta, delta, -1):
                for w in range(width - delta, delta, -1):
                    hp = h + int(dy[n, k, h - delta - 1, w - delta - 1])
                    wp = w + int(dx[n, k, h - delta - 1, w - delta - 1])
                    x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
        assert np.array_equal(ours[n].permute(1, 2, 0).numpy(), x)
    assert not torch.equal(ours, pixels)


def test_glass_offsets_range_is_asymmetric():
    dx, dy = glass_offsets(torch.arange(8), 40, 40, 3, 2)
    for offsets in (dx, dy):
        assert offsets.min() == -3 and offsets.max() == 2  # randint(-δ, δ): upper bound exclusive


def test_disk_kernel_matches_opencv():
    """Spec §2.2: the OpenCV-built kernels, including the > 1 sums at s4/s5 (reflect-101 folding)."""
    cv_disk = imagecorruptions.corruptions.disk
    sums = []
    for radius, alias in DEFOCUS.values():
        ours, ref = disk_kernel(radius, alias).numpy(), cv_disk(radius=radius, alias_blur=alias)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=0, atol=5e-9)
        sums.append(float(ours.sum(dtype=np.float64)))
    np.testing.assert_allclose(sums, [1.0, 0.99999988, 0.99999994, 1.01297545, 1.01078582], atol=2e-8)


def test_zoom_factors_are_numpy_arange():
    for severity, (start, stop, step) in ZOOM.items():
        assert np.array_equal(np.asarray(zoom_factors(severity)), np.arange(start, stop, step))
    assert [len(zoom_factors(s)) for s in SEVERITIES] == [12, 16, 11, 13, 11]


# ------------------------------------------------------------------ contract


@pytest.mark.parametrize("name", BLUR)
def test_range_shape_dtype_and_no_inplace(sample_batch, seeds4, name):
    images = sample_batch.clone()
    out = run(name, images, 5, seeds4)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    assert out.data_ptr() != images.data_ptr()
    assert torch.equal(images, sample_batch)
    assert out.min() >= 0.0 and out.max() <= 1.0 and torch.isfinite(out).all()
    assert (out - images).abs().mean() > 0.01  # it does corrupt


@pytest.mark.parametrize("name", BLUR)
def test_independent_of_batch_size_and_order(sample_batch, seeds4, name):
    severity = 3
    full = run(name, sample_batch, severity, seeds4)
    single = run(name, sample_batch[2:3], severity, seeds4[2:3])
    torch.testing.assert_close(full[2:3], single, rtol=0, atol=1e-6)
    perm = torch.tensor([3, 1, 0, 2])
    shuffled = run(name, sample_batch[perm], severity, seeds4[perm])
    torch.testing.assert_close(shuffled, full[perm], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", RANDOM)
def test_random_blurs_depend_on_the_seed(sample_batch, seeds4, name):
    a = run(name, sample_batch[:2], 4, seeds4[:2])
    b = run(name, sample_batch[:2], 4, seeds4[:2] + 1)
    assert torch.equal(a, run(name, sample_batch[:2], 4, seeds4[:2]))
    for i in range(2):
        assert not torch.equal(a[i], b[i])


@pytest.mark.parametrize("name", sorted(set(BLUR) - set(RANDOM)))
def test_deterministic_blurs_ignore_the_seed(sample_batch, seeds4, name):
    assert torch.equal(run(name, sample_batch[:1], 2, seeds4[:1]), run(name, sample_batch[:1], 2, seeds4[:1] + 7))


@pytest.mark.parametrize("name", ["defocus_blur", "motion_blur", "zoom_blur", "gaussian_blur"])
def test_parameters_scale_with_image_size(sample_batch, seeds4, name):
    """Corrupting a 2x-upsampled image and pooling back gives the 224 result: radii/sigmas scale with size."""
    small, seeds = sample_batch[:2], seeds4[:2]
    big = F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False)
    expected = run(name, small, 4, seeds)
    pooled = F.avg_pool2d(run(name, big, 4, seeds), 2)
    assert 10 * torch.log10(1.0 / ((pooled - expected) ** 2).mean()) > 40.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("name", BLUR)
def test_non_square_and_other_dtypes(name, dtype):
    images = torch.rand(2, 3, 61, 97, generator=torch.Generator().manual_seed(0)).to(dtype)
    out = run(name, images, 2, torch.tensor([1, 2]))
    assert out.shape == images.shape and out.dtype == dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    reference = run(name, images.float(), 2, torch.tensor([1, 2]))
    assert (out.float() - reference).abs().mean() < 2e-3  # same corruption, only the storage precision differs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", BLUR)
def test_cuda_matches_cpu(sample_batch, seeds4, name):
    cpu = run(name, sample_batch, 5, seeds4)
    gpu = run(name, sample_batch.cuda(), 5, seeds4.cuda()).cpu()
    assert (to_uint8(cpu).astype(int) - to_uint8(gpu)).__abs__().max() <= 1


# ------------------------------------------------------------------ fast formulations vs their definitions


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_zoom_blur_is_the_mean_of_clipped_zooms(sample_batch, seeds4, severity):
    """Separable two-tap passes (rows, transposed columns) = (x + Σ clipped_zoom(x, z)) / (len + 1)."""
    for images in (sample_batch[:2], F.interpolate(sample_batch[:2], size=(61, 97), mode="area")):
        x = images.double()
        factors = zoom_factors(severity)
        expected = (x + sum(clipped_zoom(x, z) for z in factors)) / (len(factors) + 1)
        ours = run("zoom_blur", images, severity, seeds4[:2])
        assert (ours.double() - expected.clamp(0, 1)).abs().max() < 2e-6


@pytest.mark.parametrize("severity", SEVERITIES)
def test_defocus_fft_equals_direct_filter2d(sample_batch, seeds4, severity):
    kernel = disk_kernel(*DEFOCUS[severity])
    direct = filter2d_reflect101(sample_batch[:2].double(), kernel.double()).clamp(0, 1)
    assert (run("defocus_blur", sample_batch[:2], severity, seeds4[:2]).double() - direct).abs().max() < 2e-6


def test_gaussian_blur_fft_path_equals_separable_filter(sample_batch, seeds4):
    """Severity 5 (sigma 6, 49 taps) goes through the FFT correlation; compare with the float64 separable sum."""
    expected = gaussian_filter(sample_batch[:2].double(), GAUSSIAN_SIGMA[5]).clamp(0, 1)
    assert (run("gaussian_blur", sample_batch[:2], 5, seeds4[:2]).double() - expected).abs().max() < 2e-6


@pytest.mark.parametrize("delta", [1, 2, 3, 4])
def test_glass_offsets_are_uniform_over_the_2delta_values(delta):
    dx, dy = glass_offsets(torch.arange(4), 100, 100, delta, 2)
    for offsets in (dx, dy):
        counts = torch.bincount((offsets + delta).view(-1), minlength=2 * delta).double()
        assert counts.numel() == 2 * delta
        assert (counts / counts.sum() - 1 / (2 * delta)).abs().max() < 0.01
    assert abs(float(torch.corrcoef(torch.stack([dx.view(-1), dy.view(-1)]).double())[0, 1])) < 0.02
