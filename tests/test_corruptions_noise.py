"""Noise corruptions (spec §3.1-3.3, §4.1): fidelity to imagecorruptions, the exact Poisson sampler, the contract.

The reference draws from numpy's global RNG (impulse noise from scikit-image's own), ours from counter-based
per-image seeds, so fidelity is statistical: the mean absolute change from the clean image, after the reference's
uint8 truncation, must be within 10 % of the reference's at every severity.
"""

from __future__ import annotations

import decimal

import numpy as np
import pytest
import torch
from scipy import stats

import imagecorruptions
from corruptions import derive_seeds, get_corruption, noise, rng
from corruptions.noise import SHOT_PHOTONS, poisson, poisson_inverse_cdf
from conftest import seeds_for  # noqa: E402

NOISE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
SEVERITIES = (1, 2, 3, 4, 5)




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


def test_poisson_tables_hold_the_exact_pmf():
    """Every alias-table row r gives P(k) = pmf(k; r / 16) to float64 precision (checked against 40-digit decimal
    arithmetic on every 4th row; scipy's own pmf is off by up to ~3e-15), and the masses sum to exactly 1."""
    table = noise._poisson_table(torch.device("cpu")).view(-1, 256)
    threshold, alias = (table >> 8).numpy(), (table & 255).numpy()
    rows = np.broadcast_to(np.arange(table.shape[0])[:, None], alias.shape)
    units = np.zeros(table.shape, dtype=np.int64)  # exact masses in units of 2**-53: column j keeps threshold[j]
    np.add.at(units, (rows, np.broadcast_to(np.arange(256), alias.shape)), threshold)
    np.add.at(units, (rows, alias), (1 << 45) - threshold)  # ... and hands the rest of its 2**45 to alias[j]
    assert (units >= 0).all() and (units.sum(axis=1) == 2 ** 53).all()
    with decimal.localcontext() as context:
        context.prec = 40
        for r in range(0, table.shape[0], 4):
            rate = decimal.Decimal(r) / 16
            p, exact = (-rate).exp(), []
            for k in range(256):
                p = p * rate / k if k else p
                exact.append(float(p))
            np.testing.assert_allclose(units[r] / 2.0 ** 53, exact, rtol=0, atol=3e-15, err_msg=f"rate {r / 16}")


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.0624, 0.5, 1.03, 3.0, 7.77, 12.0, 33.3, 59.99, 64.0, 100.0])
def test_poisson_sampler_matches_scipy(rate):
    """Rates on and between the 1/16 grid (the residual term), and above the tables (exact inverse CDF)."""
    counts = poisson(torch.full((8, 25_000), rate, dtype=torch.float64), torch.arange(8) + 77).flatten().numpy()
    assert counts.dtype == np.float64 and (counts == np.round(counts)).all() and (counts >= 0).all()
    if rate == 0.0:
        assert (counts == 0).all()
        return
    n = counts.size
    edges = np.unique(stats.poisson.ppf(np.linspace(0, 1, 21)[1:-1], rate))  # ~20 bins of similar mass
    observed = np.bincount(np.searchsorted(edges, counts, side="left"), minlength=edges.size + 1)
    cdf = np.concatenate([[0.0], stats.poisson.cdf(edges, rate), [1.0]])
    expected = np.diff(cdf) * n
    keep = expected > 0
    assert stats.chisquare(observed[keep], expected[keep] * observed.sum() / expected[keep].sum()).pvalue > 1e-4
    assert abs(counts.mean() - rate) < 5 * np.sqrt(rate / n)


def test_poisson_does_not_depend_on_batch_or_chunking():
    """Chunk bands depend on the batch size; each element's count must not."""
    rates = torch.rand(5, 3, 120, 130, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 60
    rates[0, 0, :2, :3] = 250.0  # a few above the tables
    seeds = torch.tensor([4, 8, 15, 16, 23])
    full = poisson(rates, seeds)
    assert torch.equal(torch.cat([poisson(rates[i:i + 1], seeds[i:i + 1]) for i in range(5)]), full)
    order = torch.tensor([3, 1, 4, 0, 2])
    assert torch.equal(poisson(rates[order], seeds[order]), full[order])


def test_poisson_handles_nan_and_negative_rates():
    rate = torch.tensor([[float("nan"), -3.0, 0.0, 2.5]], dtype=torch.float64)
    counts = poisson(rate, torch.tensor([1]))
    assert counts[0, :3].tolist() == [0.0, 0.0, 0.0] and counts[0, 3] >= 0


def test_gaussian_noise_is_independent_per_channel_with_reference_sigma():
    out = get_corruption("gaussian_noise")(grey_images(0.5), 1, seeds_for("gaussian_noise", 1, n=2))
    noise = (out - 0.5).double()
    assert abs(noise.std().item() - 0.08) < 0.08 * 0.02
    corr = torch.corrcoef(torch.stack([noise[:, 0].flatten(), noise[:, 1].flatten()]))[0, 1].item()
    assert abs(corr) < 0.02, "noise must be drawn per channel (spec §9 trap 19)"


def test_gaussian_and_speckle_noise_are_rng_normal_draws():
    """The block-wise fused implementations add exactly rng.normal(seeds, images.shape[1:]) (stream 0)."""
    images = torch.rand(3, 3, 70, 90, generator=torch.Generator().manual_seed(2))
    seeds = torch.tensor([5, 6, 7])
    z = rng.normal(seeds, (3, 70, 90))
    torch.testing.assert_close(get_corruption("gaussian_noise").fn(images, 2, seeds),
                               (images + 0.12 * z).clamp(0, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(get_corruption("speckle_noise").fn(images, 2, seeds),
                               (images + images * 0.20 * z).clamp(0, 1), rtol=0, atol=1e-6)


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


@pytest.mark.parametrize("name", NOISE)
def test_empty_and_tiny_batches(name):
    for shape in [(0, 3, 8, 8), (2, 3, 0, 5), (1, 3, 1, 1)]:
        images = torch.full(shape, 0.5)
        assert get_corruption(name)(images, 3, torch.arange(shape[0])).shape == shape


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
