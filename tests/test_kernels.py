"""Compiled CPU loops (corruptions.kernels): each gives exactly what its torch twin gives, and really runs.

Every comparison runs the same call twice, with ``RBIN_NUMBA=0`` (the torch/numpy route, the definition) and with
the compiled route, on inputs chosen to reach the edge cases: odd sizes, float64, values out of [0, 1], NaN.
numba is a dependency, so under CI these never skip; elsewhere a missing numba is a skip with a reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corruptions import blur, digital, filters, get_corruption, kernels, noise, rng
from corruptions.registry import apply_corruption
from conftest import seeds_for  # noqa: E402

pytestmark = pytest.mark.skipif(kernels._numba() is None, reason="numba is not installed: no compiled route")


def both_routes(monkeypatch, fn):
    """(torch route's result, compiled route's result) of ``fn()``."""
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    assert not kernels.enabled()
    reference = fn()
    monkeypatch.delenv(kernels.DISABLE_ENV)
    assert kernels.enabled()
    return reference, fn()


def odd_inputs(n: int = 3, height: int = 37, width: int = 29, dtype=torch.float32) -> torch.Tensor:
    """Images with values inside and outside [0, 1], exact grey levels, and one NaN."""
    x = torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(height), dtype=torch.float64)
    x = (x * 1.4 - 0.2).to(dtype)
    x[:, :, 0, :8] = torch.arange(8, dtype=dtype) * 36 / 255  # exact levels k / 255
    x[0, 1, 3, 3] = float("nan")
    return x


@pytest.mark.parametrize("delta,iterations,height,width", [(1, 2, 12, 15), (2, 2, 17, 17), (3, 2, 16, 16),
                                                           (4, 3, 23, 26)])
def test_glass_scan_equals_the_parallel_shuffle(delta, iterations, height, width):
    seeds = torch.tensor([5, 99, 12345])
    pixels = torch.randint(0, 256, (3, 3, height, width), generator=torch.Generator().manual_seed(delta)).float()
    dx, dy = blur.glass_offsets(seeds, height, width, delta, iterations)
    expected = blur.glass_shuffle(pixels, dx, dy, delta)
    scanned = pixels.clone()
    keys, gamma = rng.Words(seeds, 1).uint64_key_gamma()
    kernels.run_compiled(blur.glass_scan_loop, 3, scanned.numpy(), keys, gamma, iterations, delta)
    assert torch.equal(scanned, expected) and not torch.equal(scanned, pixels)


ROUTED = ("glass_blur", "shot_noise", "impulse_noise", "zoom_blur", "motion_blur", "snow", "elastic_transform")


@pytest.mark.parametrize("name,severity", [(name, severity) for name in ROUTED for severity in (1, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_corruptions_give_the_same_bits_on_both_routes(name, severity, dtype, monkeypatch):
    images = odd_inputs(dtype=dtype).nan_to_num(0.5).clamp(0, 1)  # the registry's input contract
    seeds = seeds_for(name, severity, n=3)
    torch_out, compiled_out = both_routes(monkeypatch, lambda: apply_corruption(get_corruption(name), images,
                                                                                severity, seeds))
    assert compiled_out.dtype == dtype and torch.equal(torch_out, compiled_out)


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_motion_blur_levels_give_the_same_bits_on_both_routes(severity, monkeypatch, sample_batch):
    """The engine's 8-bit twin (uint8 in and out), on real images: every tap order and quantisation boundary."""
    levels = sample_batch.mul(255).round().to(torch.uint8)
    seeds = seeds_for("motion_blur", severity)
    corruption = get_corruption("motion_blur")
    torch_out, compiled_out = both_routes(monkeypatch, lambda: corruption.levels_fn(levels, severity, seeds))
    assert compiled_out.dtype == torch.uint8 and torch.equal(torch_out, compiled_out)


@pytest.mark.parametrize("mode", ["nearest", "reflect", "reflect101"])
@pytest.mark.parametrize("sigma", [0.5, 1.5, 6.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gaussian_filter_gives_the_same_bits_on_both_routes(mode, sigma, dtype, monkeypatch):
    """The short-kernel shifted sums (up to 64 taps: sigma 6 has 49), every border mode, kernels longer than a
    side (17 px against 49 taps: the periodic reflections)."""
    images = odd_inputs(n=2, height=17, width=30, dtype=dtype).nan_to_num(0.25)
    torch_out, compiled_out = both_routes(monkeypatch, lambda: filters.gaussian_filter(images, sigma, mode=mode))
    assert torch.equal(torch_out, compiled_out)


@pytest.mark.parametrize("name", ["shot_noise", "impulse_noise"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_loops_handle_out_of_range_and_nan(name, dtype, monkeypatch):
    """The corruptions' own float paths (no registry gate): values outside [0, 1] and NaN, odd value counts."""
    images = odd_inputs(dtype=dtype)
    seeds = seeds_for(name, 3, n=3)
    torch_out, compiled_out = both_routes(monkeypatch, lambda: get_corruption(name).fn(images, 3, seeds))
    torch.testing.assert_close(compiled_out, torch_out, rtol=0, atol=0, equal_nan=True)  # NaN kept or replaced alike


def test_compiled_routes_really_run(monkeypatch, sample_batch):
    """The engine-facing calls take the compiled loops when numba is there (a silent fallback would hide a
    regression)."""
    ran = []
    real_run, real_compiled = kernels.run_compiled, kernels.compiled
    monkeypatch.setattr(kernels, "run_compiled", lambda loop, *a: (ran.append(loop.__name__), real_run(loop, *a)))
    monkeypatch.setattr(kernels, "compiled", lambda loop: (ran.append(loop.__name__), real_compiled(loop))[1])
    seeds = seeds_for("x", 1)
    for name in ("glass_blur", "shot_noise", "impulse_noise", "zoom_blur", "motion_blur"):
        get_corruption(name)(sample_batch, 1, seeds)
    digital.jpeg_round_trip(sample_batch)
    get_corruption("elastic_transform")(sample_batch, 3, seeds)
    assert {"glass_scan_loop", "separable_correlate_loop", "shot_table_loop", "residual_walk_loop",
            "zoom_blur_loop", "motion_blur_loop", "levels_interleave_loop", "levels_lookup_loop",
            "elastic_warp_loop", "impulse_loop"} <= set(ran)
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    ran.clear()
    get_corruption("shot_noise")(sample_batch, 1, seeds)
    digital.jpeg_round_trip(sample_batch)
    assert ran == []


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("height,width,spread", [(11, 17, 1.0), (23, 9, 3.5), (1, 6, 2.0), (2, 1, 40.0)])
def test_grid_sample_loop_is_torch_grid_sample(align_corners, height, width, spread):
    """The compiled bilinear, reflection-padded sampler gives torch's CPU grid_sample bits: points inside and far
    outside the image (several reflections), one-pixel sides, exact borders, NaN and infinite points."""
    fused = digital._grid_sample_fma()
    assert fused is not None, "this torch build's grid_sample rounds neither way the compiled twin knows"
    generator = torch.Generator().manual_seed(height * width)
    src = torch.rand(2, 3, height, width, generator=generator)
    grid = (torch.rand(2, 7, 13, 2, generator=generator) * 2.0 - 1.0) * spread
    grid[0, 0, :6] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [float("nan"), 0.5], [float("inf"), -0.5],
                                   [-float("inf"), float("nan")]])
    expected = torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="reflection",
                                               align_corners=align_corners)
    out = torch.full_like(expected, -7.0)
    kernels.compiled(digital.grid_sample_loop)(src.numpy(), grid.numpy(), align_corners, fused, out.numpy(), 0, 2)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("severity", [1, 2, 3, 5])
def test_elastic_gives_the_same_bits_on_both_routes_on_real_images(severity, monkeypatch, sample_batch):
    """The engine's case (float32 photographs) at every smoothing route: the long-kernel matrices (s1, s2) and the
    shifted sums (s3-s5)."""
    seeds = seeds_for("elastic_transform", severity)
    corruption = get_corruption("elastic_transform")
    torch_out, compiled_out = both_routes(monkeypatch, lambda: corruption(sample_batch, severity, seeds))
    assert torch.equal(torch_out, compiled_out) and not torch.equal(compiled_out, sample_batch)


def test_elastic_keeps_the_torch_route_where_grid_sample_rounds_otherwise(monkeypatch, sample_batch):
    """A torch build whose grid_sample the twin does not reproduce: elastic falls back to grid_sample itself."""
    ran = []
    real_run = kernels.run_compiled
    monkeypatch.setattr(kernels, "run_compiled", lambda loop, *a: (ran.append(loop.__name__), real_run(loop, *a)))
    seeds = seeds_for("elastic_transform", 4)
    expected = get_corruption("elastic_transform")(sample_batch, 4, seeds)
    assert "elastic_warp_loop" in ran
    ran.clear()
    monkeypatch.setattr(digital, "_grid_sample_fma", lambda: None)
    assert torch.equal(get_corruption("elastic_transform")(sample_batch, 4, seeds), expected)
    assert "elastic_warp_loop" not in ran


def test_poisson_residual_walk_equals_torch(monkeypatch):
    """The general sampler shares the residual walk: rates across the table grid, many residual draws."""
    rates = torch.linspace(0, 64, 40_000, dtype=torch.float64).view(4, -1)
    torch_out, compiled_out = both_routes(monkeypatch, lambda: noise.poisson(rates, torch.arange(4) + 9))
    assert torch.equal(torch_out, compiled_out) and torch_out.sum() > 0


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalise", [False, True])
def test_jpeg_round_trip_gives_the_same_bits_on_both_routes(layout, dtype, normalise, monkeypatch):
    images = odd_inputs(dtype=dtype)
    affine = ([1 / 0.229, 1 / 0.224, 1 / 0.225], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]) if normalise \
        else None
    torch_out, compiled_out = both_routes(monkeypatch, lambda: digital.jpeg_round_trip(images, 85, layout, affine))
    assert torch.equal(torch_out, compiled_out)
    assert compiled_out.is_contiguous(memory_format=layout)


def test_jpeg_levels_round_and_truncate_on_both_routes(monkeypatch):
    """jpeg_compression rounds (half to even), the released-file step truncates: both, at a quality that keeps
    levels nearly intact, on values within a hair of a level and on non-contiguous input."""
    levels = torch.arange(256, dtype=torch.float64).repeat(3, 8, 1).view(1, 3, 16, 128)
    hair = (levels / 255.0).float()
    halves = ((levels + 0.5) / 255.0).float().clamp(max=1.0)
    images = torch.cat([hair, halves, (hair - 2e-8).clamp(min=0)])
    strided = images.transpose(2, 3).contiguous().transpose(2, 3)
    for quality, fn in ((100, digital.jpeg_round_trip), (7, lambda x, q: get_corruption("jpeg_compression")(
            x, 5, torch.zeros(len(x), dtype=torch.int64)))):
        torch_out, compiled_out = both_routes(monkeypatch, lambda: fn(strided, quality))
        assert torch.equal(torch_out, compiled_out)


def test_map_spans_covers_every_image_once(monkeypatch):
    for threads in (1, 2, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        seen = []
        kernels.map_spans(7, lambda span: seen.extend(span))
        assert sorted(seen) == list(range(7))
    kernels.map_spans(0, lambda span: seen.append("never"))
    assert "never" not in seen


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    assert not kernels.enabled() and not kernels.usable(torch.zeros(1))
    monkeypatch.setenv(kernels.DISABLE_ENV, "1")
    assert kernels.enabled() and kernels.usable(torch.zeros(1))
    assert not kernels.usable(torch.zeros(1, device="meta"))


def test_word_helper_is_the_stream_of_rng_words():
    """kernels.word (what the compiled loops hash) in plain Python equals rng's words, int64 bits as uint64."""
    seeds = torch.tensor([0, 7, 2 ** 32 - 1])
    words = rng.Words(seeds, 3)
    keys, gamma = words.uint64_key_gamma()
    expected = words.range(0, 5).numpy().view("uint64")
    assert [[int(kernels.word(keys[i], j, gamma)) for j in range(5)] for i in range(3)] == expected.tolist()


def test_compiles_without_a_writable_cache_folder(monkeypatch):
    """A read-only install and home: numba cannot cache, so the loop is compiled per process instead of failing."""
    numba = kernels._numba()

    class NoCacheFolder:
        def njit(self, **options):
            if options.get("cache"):
                raise RuntimeError("cannot cache function 'loop': no locator available for file 'noise.py'")
            return numba.njit(**options)

    monkeypatch.setattr(kernels, "_numba", lambda: NoCacheFolder())
    walk = kernels.compiled.__wrapped__(noise.residual_walk_loop)
    u, rho = np.array([0.5, 0.9999999]), np.array([0.01, 0.06])
    extra = np.zeros(2, dtype=np.int64)
    walk(u, np.exp(-rho), rho, extra, 0, 2)
    assert extra.tolist() == [0, 4]  # scipy.stats.poisson.ppf([0.5, 0.9999999], [0.01, 0.06])
    assert type(walk._cache).__name__ == "NullCache"  # compiled without a disk cache
