"""Noise corruptions of ImageNet-C (spec §3.1-3.3, §4.1): independent per pixel and per channel.

All four are pointwise, so nothing depends on the image size: the per-pixel parameters of the 224x224 reference are
used unchanged at every resolution (the noise grain is one pixel, as in the reference). Every random number comes
from ``corruptions.rng`` keyed by the image's seed, so an image gets the same noise in any batch and on any device.
"""

from __future__ import annotations

import torch

from corruptions import rng
from corruptions.registry import register_corruption

GAUSSIAN_SIGMA = {1: 0.08, 2: 0.12, 3: 0.18, 4: 0.26, 5: 0.38}  # §3.1
SHOT_PHOTONS = {1: 60, 2: 25, 3: 12, 4: 5, 5: 3}  # §3.2: Poisson(x*c)/c, lower c = stronger
IMPULSE_AMOUNT = {1: 0.03, 2: 0.06, 3: 0.09, 4: 0.17, 5: 0.27}  # §3.3
SPECKLE_SIGMA = {1: 0.15, 2: 0.20, 3: 0.35, 4: 0.45, 5: 0.60}  # §4.1

_POISSON_MAX_STEPS = 200  # safety bound; the search from the Cornish-Fisher start needs a handful of steps


def _work_dtype(images: torch.Tensor) -> torch.dtype:
    """At least float32 for the arithmetic (half-precision inputs would quantise the noise)."""
    return torch.promote_types(images.dtype, torch.float32)


@register_corruption("gaussian_noise", category="noise", random=True,
                     params={s: {"sigma": v} for s, v in GAUSSIAN_SIGMA.items()})
def gaussian_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Additive white Gaussian noise x + N(0, sigma), per pixel and channel (spec §3.1); size-independent."""
    dtype = _work_dtype(images)
    noise = rng.normal(seeds, tuple(images.shape[1:]), stream=0, dtype=dtype)
    return (images.to(dtype) + GAUSSIAN_SIGMA[severity] * noise).clamp_(0.0, 1.0).to(images.dtype)


def uniform48(seeds: torch.Tensor, shape: tuple[int, ...], stream: int) -> torch.Tensor:
    """U(0, 1) in float64 with 48 random bits (two 24-bit counter-based draws), never exactly 0 or 1.

    Why: inverse-CDF sampling maps u to an outcome; 48 bits keep the distribution error (at most one grid step
    per outcome boundary, 2**-48) far below anything measurable, also in the far tails.
    """
    hi = rng.uniform(seeds, shape, stream=stream, dtype=torch.float64) - 2.0 ** -25  # b_hi * 2**-24
    lo = rng.uniform(seeds, shape, stream=stream + 1, dtype=torch.float64)  # (b_lo + 0.5) * 2**-24
    return hi + lo * 2.0 ** -24


def poisson_inverse_cdf(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The Poisson(rate) quantile of u: the smallest k with P(X <= k) >= u, element-wise, as float64.

    Exact inverse-CDF sampling (not an approximation) for any rate, with tensor ops only, so it runs the same on
    CPU and GPU and, fed counter-based uniforms, is reproducible per image. Why not ``torch.poisson``: it needs a
    stateful generator, which ties the noise to batch composition and device.

    Method: start at the Cornish-Fisher quantile guess (with continuity correction)
    k0 = floor(rate + sqrt(rate) z + (z^2 - 1) / 6 + 1/2), z = Phi^-1(u); get the exact CDF there from the
    regularised upper incomplete gamma function, P(X <= k) = Q(k + 1, rate), and the pmf from lgamma; then walk up
    (F += p) or down (F -= p) with the pmf recursion until F(k - 1) < u <= F(k). The guess is off by at most a few
    steps for every rate (mostly 0, rarely 1-4), so a few iterations over the few per cent of elements whose guess
    is off finish the job. All in float64; equals ``scipy.stats.poisson.ppf``. Cost: the incomplete gamma dominates
    on CPU (~25 ms per 224x224 image at rate 60).
    """
    rate = rate.to(torch.float64)
    u = u.to(torch.float64)
    safe_rate = rate.clamp_min(1e-300)  # rate 0: pmf(k>0) = 0, F = 1, the walk ends at k = 0
    z = torch.special.ndtri(u)
    k = torch.floor(rate + rate.sqrt() * z + (z * z - 1.0) / 6.0 + 0.5).clamp_min_(0.0)
    cdf = torch.special.gammaincc(k + 1.0, safe_rate)
    pmf = torch.exp(torch.special.xlogy(k, safe_rate) - safe_rate - torch.lgamma(k + 1.0))
    # Walk only the elements whose guess is off (a few per cent), on compacted copies.
    out = k.reshape(-1)
    index = ((u > cdf) | ((u <= cdf - pmf) & (k > 0))).reshape(-1).nonzero().squeeze(1)
    k, cdf, pmf = out[index], cdf.reshape(-1)[index], pmf.reshape(-1)[index]
    u, lam = u.reshape(-1)[index], safe_rate.reshape(-1)[index]
    for _ in range(_POISSON_MAX_STEPS):
        if index.numel() == 0:
            break
        up = u > cdf
        down = ~up & (u <= cdf - pmf) & (k > 0)
        moved = up | down
        k_up = k + 1.0
        pmf_up = pmf * lam / k_up
        cdf = torch.where(up, cdf + pmf_up, torch.where(down, cdf - pmf, cdf))
        pmf = torch.where(up, pmf_up, torch.where(down, pmf * k / lam, pmf))
        k = torch.where(up, k_up, torch.where(down, k - 1.0, k))
        out[index] = k
        index, k, cdf, pmf, u, lam = index[moved], k[moved], cdf[moved], pmf[moved], u[moved], lam[moved]
    return out.view(rate.shape)


@register_corruption("shot_noise", category="noise", random=True,
                     params={s: {"photons": v} for s, v in SHOT_PHOTONS.items()})
def shot_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Photon noise Poisson(x * c) / c per pixel and channel (spec §3.2); size-independent.

    Sampled exactly by :func:`poisson_inverse_cdf` from one 48-bit counter-based uniform per element.
    """
    photons = float(SHOT_PHOTONS[severity])
    rate = images.to(torch.float64).clamp(0.0, 1.0) * photons
    counts = poisson_inverse_cdf(rate, uniform48(seeds, tuple(images.shape[1:]), stream=0))
    return (counts / photons).clamp_(0.0, 1.0).to(images.dtype)


@register_corruption("impulse_noise", category="noise", random=True,
                     params={s: {"amount": v} for s, v in IMPULSE_AMOUNT.items()})
def impulse_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Salt-and-pepper noise (spec §3.3): each channel value independently becomes 1 or 0 (even odds) with
    probability p, as scikit-image's ``random_noise(mode='s&p')`` (two Bernoulli masks); size-independent."""
    shape = tuple(images.shape[1:])
    flipped = rng.uniform(seeds, shape, stream=0) <= IMPULSE_AMOUNT[severity]
    salted = rng.uniform(seeds, shape, stream=1) <= 0.5
    out = torch.where(flipped, salted.to(images.dtype), images)
    return out.clamp(0.0, 1.0)


@register_corruption("speckle_noise", category="noise", random=True,
                     params={s: {"sigma": v} for s, v in SPECKLE_SIGMA.items()})
def speckle_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Multiplicative Gaussian noise x + x * N(0, sigma), per pixel and channel (spec §4.1); size-independent."""
    dtype = _work_dtype(images)
    x = images.to(dtype)
    noise = rng.normal(seeds, tuple(images.shape[1:]), stream=0, dtype=dtype)
    return (x + x * (SPECKLE_SIGMA[severity] * noise)).clamp_(0.0, 1.0).to(images.dtype)
