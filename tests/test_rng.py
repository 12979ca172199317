"""The counter-based generator (corruptions.rng): pinned values, distributions, independence, batch independence.

The pinned values catch any platform or refactoring that changes the bits (e.g. int64 products that do not wrap
modulo 2**64, a different byte order); a plain-Python SplitMix64 re-implementation states the algorithm.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from corruptions import rng

MASK64 = (1 << 64) - 1


def mix64(v: int) -> int:
    v &= MASK64
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & MASK64
    return v ^ (v >> 31)


def reference_word(seed: int, stream: int, j: int, kind: int = rng._KIND_UNIFORM) -> int:
    """Word j of (seed, stream) as the rng module docstring defines it, on Python ints."""
    salt, gamma = rng._stream_constants(stream, kind)
    key = mix64(mix64(seed + rng._SEED_OFFSET) ^ (salt & MASK64))
    return mix64(key + (j + 1) * (gamma & MASK64))


def unsigned(t: torch.Tensor) -> list[int]:
    return [v & MASK64 for v in t.reshape(-1).tolist()]


SEEDS = torch.tensor([0, 1, 2**32 - 1])


def test_pinned_words():
    assert [hex(v) for v in unsigned(rng.bits(SEEDS, (2,), stream=0))] == [
        "0x7f44d080592d389e", "0x32102a596ae4c868", "0xda827ed24361f28e",
        "0x8885d25b9cce1430", "0xc6bdde28100c72e9", "0x6b28b9ff1743306d"]
    assert [hex(v) for v in unsigned(rng.bits(SEEDS[:1], (2,), stream=7))] == [
        "0x13aa902a9b9063a5", "0xf2cf5b246e07725f"]


def test_pinned_values():
    seed = SEEDS[:1]
    assert rng.uniform(seed, (3,)).tolist() == [[0.3532903790473938, 0.5376129746437073, 0.7873659729957581]]
    assert rng.uniform(seed, (2,), dtype=torch.float64).tolist() == [[0.49714377530579135, 0.19555916483922708]]
    torch.testing.assert_close(rng.normal(seed, (4,)), torch.tensor(
        [[0.3013242781162262, 0.9929221868515015, 0.17018119990825653, -0.0842369794845581]]), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(rng.normal(seed, (2,), dtype=torch.float64), torch.tensor(
        [[-0.46161271551254696, 0.6383509490600745]], dtype=torch.float64), rtol=1e-13, atol=1e-13)
    assert rng.derive_seeds(0, torch.tensor([0, 1]), "gaussian_noise", 3).tolist() == [2023479126, 3620924957]


@pytest.mark.parametrize("shape", [(5,), (3, 9, 7), (3, 200, 230)])  # the last one spans several CPU blocks
def test_words_follow_the_documented_splitmix64_construction(shape):
    seeds = torch.tensor([0, 5, 2**32 - 1, -7])
    words = rng.bits(seeds, shape, stream=4).view(4, -1)
    count = words.shape[1]
    for i, seed in enumerate(seeds.tolist()):
        for j in sorted({0, 1, count // 2, count - 1}):
            assert words[i, j].item() & MASK64 == reference_word(seed, 4, j), (i, j)


def test_values_are_the_documented_functions_of_the_words():
    seeds = torch.tensor([3, 4])
    w = rng.bits(seeds, (6,), stream=2)
    u32 = rng.uniform(seeds, (11,), stream=2)  # element 2j from the low half of word j, 2j+1 from the high half
    for i in range(2):
        for e in range(11):
            word = w[i, e // 2].item() & MASK64
            k = (word >> (32 * (e % 2))) & 0x7FFFFF
            assert u32[i, e].item() == (2 * k + 1) / 2**24
    u64 = rng.uniform(seeds, (6,), stream=2, dtype=torch.float64)
    expected = [[(2 * (v >> 12) + 1) / 2**53 for v in unsigned(w[i])] for i in range(2)]
    assert u64.tolist() == expected
    assert torch.equal(rng.unit_float64(w), u64)
    normals = rng.normal(seeds, (6,), stream=5)
    for i, seed in enumerate(seeds.tolist()):
        for e in range(6):
            word = reference_word(seed, 5, e // 2, rng._KIND_NORMAL)
            radius = math.sqrt(-2.0 * math.log(1.0 - ((word >> 32) & 0x7FFFFF) / 2**23))
            angle = 2.0 * math.pi * (word & 0x7FFFFF) / 2**23
            value = radius * (math.cos(angle) if e % 2 == 0 else math.sin(angle))
            assert abs(normals[i, e].item() - value) < 1e-5


def test_words_range_and_at_match_bits():
    seeds = torch.tensor([11, 12, 13])
    full = rng.bits(seeds, (1000,), stream=3)
    words = rng.Words(seeds, stream=3)
    assert torch.equal(words.range(100, 357), full[:, 100:357])
    image, index = torch.tensor([2, 0, 1, 2]), torch.tensor([999, 0, 500, 7])
    assert torch.equal(words.at(image, index), full[image, index])


@pytest.mark.parametrize("fn", ["uniform", "uniform64", "normal", "normal64", "bits"])
def test_batch_independence_and_shape_independence(fn):
    """Image i's values depend only on seeds[i]: any batch, order or block layout; a longer draw extends a shorter."""
    draw = {"uniform": lambda s, shape: rng.uniform(s, shape),
            "uniform64": lambda s, shape: rng.uniform(s, shape, dtype=torch.float64),
            "normal": lambda s, shape: rng.normal(s, shape),
            "normal64": lambda s, shape: rng.normal(s, shape, dtype=torch.float64),
            "bits": lambda s, shape: rng.bits(s, shape)}[fn]
    seeds = torch.arange(40) * 7919
    big = draw(seeds[:3], (3, 150, 160))  # 72000 values per image: several blocks per image
    assert torch.equal(torch.cat([draw(seeds[i:i + 1], (3, 150, 160)) for i in range(3)]), big)
    small = draw(seeds, (5, 7))  # 35 values per image: many images per block
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw(seeds[order], (5, 7)), small[order])
    assert torch.equal(draw(seeds[7:8], (5, 7)), small[7:8])
    assert torch.equal(draw(seeds[:3], (35,)), small[:3].reshape(3, 35))  # same elements whatever the shape
    assert torch.equal(draw(seeds[:3], (2, 10)).reshape(3, 20), draw(seeds[:3], (33,))[:, :20])


def test_uniform_is_open_unit_interval_and_uniform():
    for dtype, bits in ((torch.float32, 23), (torch.float64, 52)):
        u = rng.uniform(torch.tensor([1, 2, 3, 4]), (250_000,), stream=1, dtype=dtype).double().flatten()
        assert u.dtype == torch.float64 and bool(((u > 0) & (u < 1)).all())
        assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
        assert abs(u.var().item() - 1 / 12) < 0.002
        counts = torch.histc(u, bins=100, min=0.0, max=1.0).numpy()
        assert stats.chisquare(counts).pvalue > 1e-4, dtype
        grid = u * 2.0 ** (bits + 1)  # values are (2k + 1) / 2**(bits + 1): odd multiples of the finest step
        assert bool((torch.frac(grid) == 0).all() & (torch.remainder(grid, 2) == 1).all())


def test_uniform_uses_all_its_bits():
    """The low-order bits are as random as the high ones (a weak hash shows up there first)."""
    u = rng.uniform(torch.tensor([9]), (200_000,), dtype=torch.float32).flatten().double()
    k = ((u * 2**24 - 1) / 2).round().long()  # the 23-bit integers
    for bit in (0, 1, 11, 22):
        assert abs(((k >> bit) & 1).double().mean().item() - 0.5) < 0.005, bit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_moments_and_ks(dtype):
    z = rng.normal(torch.tensor([21, 22]), (3, 200, 200), stream=0, dtype=dtype)
    assert z.dtype == dtype
    z = z.double().flatten()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.std().item() - 1.0) < 5 / math.sqrt(2 * n)
    assert abs(stats.skew(z.numpy())) < 0.02 and abs(stats.kurtosis(z.numpy())) < 0.04
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-4
    tail = (z.abs() > 3).double().mean().item()
    assert abs(tail - 2 * stats.norm.sf(3)) < 5 * math.sqrt(2 * stats.norm.sf(3) / n)
    assert bool(torch.isfinite(z).all())


def test_normal_cos_and_sin_halves_are_uncorrelated():
    z = rng.normal(torch.tensor([5]), (400_000,)).view(-1, 2).double()
    assert abs(torch.corrcoef(z.T)[0, 1].item()) < 0.01
    assert abs(torch.corrcoef((z ** 2).T)[0, 1].item()) < 0.01  # Box-Muller pairs are independent, not only uncorrelated


def test_streams_images_and_kinds_are_uncorrelated():
    seeds = torch.tensor([100, 101])  # neighbouring seeds
    n = 200_000
    draws = [rng.uniform(seeds, (n,), stream=0), rng.uniform(seeds, (n,), stream=1),
             rng.uniform(seeds, (n,), stream=2)]
    series = [d[i] for d in draws for i in range(2)]
    series.append(rng.normal(seeds[:1], (n,), stream=0)[0])  # normal(stream 0) vs uniform(stream 0)
    corr = torch.corrcoef(torch.stack(series).double())
    off_diagonal = corr - torch.diag(torch.diag(corr))
    assert off_diagonal.abs().max().item() < 5 / math.sqrt(n)
    shifted = torch.corrcoef(torch.stack([draws[0][0, 1:], draws[0][0, :-1]]).double())[0, 1]
    assert abs(shifted.item()) < 5 / math.sqrt(n), "consecutive values of one stream are uncorrelated"


def test_different_seeds_and_streams_give_different_words():
    w = rng.bits(torch.arange(1000), (4,), stream=0)
    assert torch.unique(w).numel() == w.numel()
    assert not torch.equal(rng.bits(torch.tensor([3]), (64,), stream=0), rng.bits(torch.tensor([3]), (64,), stream=1))


def test_randint_range_and_uniformity():
    r = rng.randint(torch.arange(3000), -3, 4, stream=2)
    assert r.shape == (3000,) and r.dtype == torch.int64
    assert int(r.min()) == -3 and int(r.max()) == 3
    assert stats.chisquare(np.bincount((r + 3).numpy(), minlength=7)).pvalue > 1e-4
    grid = rng.randint(torch.tensor([1, 2]), 0, 5, shape=(4, 6), stream=0)
    assert grid.shape == (2, 4, 6) and bool(((grid >= 0) & (grid < 5)).all())


def test_empty_and_half_precision():
    assert rng.uniform(torch.tensor([1, 2]), (0,)).shape == (2, 0)
    assert rng.normal(torch.zeros(0, dtype=torch.int64), (3, 4)).shape == (0, 3, 4)
    half = rng.normal(torch.tensor([1]), (3, 8, 8), dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, rng.normal(torch.tensor([1]), (3, 8, 8)).half())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_values():
    seeds = torch.tensor([1, 2, 3])
    assert torch.equal(rng.bits(seeds.cuda(), (3, 50, 60)).cpu(), rng.bits(seeds, (3, 50, 60)))
    assert torch.equal(rng.uniform(seeds.cuda(), (3, 50, 60)).cpu(), rng.uniform(seeds, (3, 50, 60)))
    torch.testing.assert_close(rng.normal(seeds.cuda(), (3, 50, 60)).cpu(), rng.normal(seeds, (3, 50, 60)),
                               rtol=1e-5, atol=1e-5)
