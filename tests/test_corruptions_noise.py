"""Noise corruptions (spec §3.1-3.3, §4.1): fidelity to imagecorruptions, the exact Poisson sampler, the contract.

The reference draws from numpy's global RNG (impulse noise from scikit-image's own), ours from counter-based
per-image seeds, so fidelity is statistical: the mean absolute change from the clean image, after the reference's
uint8 truncation, must be within 10 % of the reference's at every severity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import imagecorruptions
from corruptions import derive_seeds, get_corruption
from corruptions.noise import SHOT_PHOTONS, poisson_inverse_cdf, uniform48

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
SEVERITIES = (1, 2, 3, 4, 5)


def seeds_for(name: str, severity: int, n: int = 4, run_seed: int = 0) -> torch.Tensor:
    return derive_seeds(run_seed, torch.arange(n), name, severity)


def as_reference_uint8(images: torch.Tensor) -> np.ndarray:
    """Our float output as the reference saves it: np.uint8(x * 255) (truncation), (N, H, W, 3)."""
    return np.floor(images.permute(0, 2, 3, 1).double().numpy() * 255.0).astype(np.uint8)


def grey_images(level: float, n: int = 2, size: int = 128) -> torch.Tensor:
    return torch.full((n, 3, size, size), level)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", NOISE)
def test_mean_change_matches_reference(name, severity, sample_batch, sample_uint8):
    ours = as_reference_uint8(get_corruption(name)(sample_batch, severity, seeds_for(name, severity)))
    np.random.seed(1000 + severity)
    reference = np.stack([imagecorruptions.corrupt(img, severity, name) for img in sample_uint8])
    clean = sample_uint8.astype(np.float64)
    ours_change = np.abs(ours - clean).mean()
    reference_change = np.abs(reference - clean).mean()
    assert abs(ours_change - reference_change) <= 0.10 * reference_change, (ours_change, reference_change)


@pytest.mark.parametrize("rate", [0.0, 1e-9, 0.03, 0.7, 3.0, 12.0, 60.0, 400.0])
def test_poisson_inverse_cdf_equals_scipy_quantiles(rate):
    u = torch.tensor([1e-15, 1e-9, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 1e-4, 1 - 1e-9, 1 - 1e-14],
                     dtype=torch.float64)
    u = torch.cat([u, torch.rand(2000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)])
    ours = poisson_inverse_cdf(torch.full_like(u, rate), u).numpy()
    expected = stats.poisson.ppf(u.numpy(), rate) if rate > 0 else np.zeros(u.numel())
    np.testing.assert_array_equal(ours, expected)


def test_shot_noise_has_poisson_distribution():
    """On a flat grey image every element is Poisson(0.5 * c) / c: the empirical pmf must match it."""
    photons = SHOT_PHOTONS[5]
    out = get_corruption("shot_noise")(grey_images(0.5, n=4), 5, seeds_for("shot_noise", 5))
    counts = torch.round(out.double() * photons)
    assert torch.allclose(out.double() * photons, counts, atol=1e-4), "outputs must be multiples of 1/c"
    counts = counts.flatten()
    n = counts.numel()
    for k in range(4):  # counts >= 3 are clipped to 1.0 (k / 3 >= 1)
        observed = (counts == k).double().mean().item() if k < 3 else (counts >= 3).double().mean().item()
        expected = stats.poisson.pmf(k, 1.5) if k < 3 else stats.poisson.sf(2, 1.5)
        assert abs(observed - expected) < 5 * np.sqrt(expected * (1 - expected) / n), (k, observed, expected)


def test_uniform48_is_open_unit_interval_with_fine_resolution():
    u = uniform48(torch.tensor([5, 6]), (100_000,), stream=0)
    assert u.dtype == torch.float64 and bool(((u > 0) & (u < 1)).all())
    assert abs(u.mean().item() - 0.5) < 0.005
    # more than 24 bits: the values are not all on the 2**-24 grid
    assert bool((torch.frac(u * 2.0 ** 24) != 0.5).any())


def test_gaussian_noise_is_independent_per_channel_with_reference_sigma():
    out = get_corruption("gaussian_noise")(grey_images(0.5), 1, seeds_for("gaussian_noise", 1, n=2))
    noise = (out - 0.5).double()
    assert abs(noise.std().item() - 0.08) < 0.08 * 0.02
    corr = torch.corrcoef(torch.stack([noise[:, 0].flatten(), noise[:, 1].flatten()]))[0, 1].item()
    assert abs(corr) < 0.02, "noise must be drawn per channel (spec §9 trap 19)"


def test_speckle_noise_scales_with_intensity():
    images = torch.cat([grey_images(0.2, n=1), grey_images(0.4, n=1)])
    out = get_corruption("speckle_noise")(images, 1, seeds_for("speckle_noise", 1, n=2))
    spread = (out - images).double().flatten(1).std(dim=1)
    assert torch.allclose(spread, torch.tensor([0.2 * 0.15, 0.4 * 0.15], dtype=torch.float64), rtol=0.03)
    assert torch.equal(get_corruption("speckle_noise")(torch.zeros(1, 3, 8, 8), 5, torch.tensor([1])),
                       torch.zeros(1, 3, 8, 8)), "black stays black under multiplicative noise"


@pytest.mark.parametrize("severity,amount", [(1, 0.03), (5, 0.27)])
def test_impulse_noise_flips_the_reference_fraction_to_salt_and_pepper(severity, amount):
    images = grey_images(0.5, n=4)
    out = get_corruption("impulse_noise")(images, severity, seeds_for("impulse_noise", severity))
    salt, pepper = (out == 1.0).double().mean().item(), (out == 0.0).double().mean().item()
    assert bool(((out == 0.5) | (out == 0.0) | (out == 1.0)).all())
    tolerance = 5 * np.sqrt(amount / 2 * (1 - amount / 2) / out.numel())  # 5 binomial standard errors
    assert abs(salt - amount / 2) < tolerance and abs(pepper - amount / 2) < tolerance, (salt, pepper)
    changed = (out != 0.5)
    assert not bool((changed.all(dim=1) == changed.any(dim=1)).all()), "channels flip independently"


@pytest.mark.parametrize("name", NOISE)
def test_contract_range_shape_and_no_in_place_change(name, sample_batch):
    images = sample_batch.clone()
    out = get_corruption(name)(images, 3, seeds_for(name, 3))
    assert torch.equal(images, sample_batch), "input modified in place"
    assert out.shape == images.shape and out.dtype == images.dtype and out.data_ptr() != images.data_ptr()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, images)
    fn = get_corruption(name).fn  # the plain function also returns new memory in range
    raw = fn(images, 3, seeds_for(name, 3))
    assert raw.data_ptr() != images.data_ptr() and float(raw.min()) >= 0.0 and float(raw.max()) <= 1.0
    assert torch.equal(images, sample_batch)


@pytest.mark.parametrize("name", NOISE)
def test_same_seeds_same_result_whatever_the_batch(name, sample_batch):
    corruption = get_corruption(name)
    seeds = seeds_for(name, 4)
    full = corruption(sample_batch, 4, seeds)
    singles = torch.cat([corruption(sample_batch[i:i + 1], 4, seeds[i:i + 1]) for i in range(4)])
    assert torch.equal(full, singles)
    order = torch.tensor([2, 0, 3, 1])
    assert torch.equal(corruption(sample_batch[order], 4, seeds[order]), full[order])


@pytest.mark.parametrize("name", NOISE)
def test_different_seeds_differ(name, sample_batch):
    corruption = get_corruption(name)
    a = corruption(sample_batch, 2, seeds_for(name, 2, run_seed=0))
    b = corruption(sample_batch, 2, seeds_for(name, 2, run_seed=1))
    assert (a != b).double().mean().item() > 0.01


@pytest.mark.parametrize("name", NOISE)
def test_float64_and_other_sizes(name):
    images = torch.rand(2, 3, 40, 70, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = get_corruption(name)(images, 2, torch.tensor([1, 2]))
    assert out.dtype == torch.float64 and out.shape == images.shape


def test_registry_metadata():
    for name in NOISE:
        entry = get_corruption(name)
        assert entry.category == "noise" and entry.random and sorted(entry.params) == list(SEVERITIES)
    assert get_corruption("shot_noise").params[5] == {"photons": 3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NOISE)
def test_cuda_matches_cpu(name, sample_batch):
    seeds = seeds_for(name, 3)
    cpu = get_corruption(name)(sample_batch, 3, seeds)
    gpu = get_corruption(name)(sample_batch.cuda(), 3, seeds.cuda())
    assert gpu.is_cuda
    assert (gpu.cpu() - cpu).abs().max().item() < 1e-5
