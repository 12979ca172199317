"""Noise corruptions of ImageNet-C (spec §3.1-3.3, §4.1): independent per pixel and per channel.

All four are pointwise, so nothing depends on the image size: the per-pixel parameters of the 224x224 reference are
used unchanged at every resolution (the noise grain is one pixel, as in the reference). Every random number comes
from ``corruptions.rng`` keyed by the image's seed, so an image gets the same noise in any batch and on any device.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from corruptions import kernels, rng
from corruptions.common import work_dtype
from corruptions.registry import register_corruption

GAUSSIAN_SIGMA = {1: 0.08, 2: 0.12, 3: 0.18, 4: 0.26, 5: 0.38}  # §3.1
SHOT_PHOTONS = {1: 60, 2: 25, 3: 12, 4: 5, 5: 3}  # §3.2: Poisson(x*c)/c, lower c = stronger
IMPULSE_AMOUNT = {1: 0.03, 2: 0.06, 3: 0.09, 4: 0.17, 5: 0.27}  # §3.3
SPECKLE_SIGMA = {1: 0.15, 2: 0.20, 3: 0.35, 4: 0.45, 5: 0.60}  # §4.1

_POISSON_MAX_STEPS = 200  # safety bound; the search from the Cornish-Fisher start needs a handful of steps

# Poisson sampler for rates <= 64 (shot noise: rate = x * c <= 60): see ``poisson``.
_GRID = 16  # table rates are multiples of 1/16
_TABLE_MAX_RATE = 64
_COLUMN_BITS = 8  # 256 outcomes per table row; P(X >= 256) < 2**-53 at rate 64
_PROB_BITS = 53  # outcome probabilities are multiples of 2**-53
_CAP_BITS = _PROB_BITS - _COLUMN_BITS  # each alias column holds 2**45 units of probability
_RESIDUAL_BITS = 64 - _PROB_BITS  # the word's 11 low bits start the residual's uniform
# A residual count > 0 needs u >= exp(-1/16) = 0.93941...; 1923/2048 = 0.93896 is below it, so low bits < 1923
# settle the residual at 0 without a second word (94 % of elements).
_RESIDUAL_ZERO_BELOW = math.floor(math.exp(-1.0 / _GRID) * 2 ** _RESIDUAL_BITS)
_CPU_CHUNK = 1 << 17  # elements per chunk on CPU: temporaries stay in cache, ops are big enough for 2+ threads


def _flat(images: torch.Tensor) -> torch.Tensor:
    """(N, values per image) view (or copy, if not viewable) of a batch; works for empty batches too."""
    return images.reshape(images.shape[0], math.prod(images.shape[1:]))


def _bands(rows: int, cols: int, device: torch.device):
    """(c0, c1) column bands of a rows x cols grid with ~_CPU_CHUNK cells each on CPU (one band elsewhere)."""
    width = cols if device.type != "cpu" else max(256, _CPU_CHUNK // max(rows, 1))
    for c0 in range(0, cols, width):
        yield c0, min(cols, c0 + width)


@register_corruption("gaussian_noise", category="noise", benchmark="imagenet_c", random=True,
                     params={s: {"sigma": v} for s, v in GAUSSIAN_SIGMA.items()})
def gaussian_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Additive white Gaussian noise x + N(0, sigma), per pixel and channel (spec §3.1); size-independent.

    The noise is ``rng.normal(seeds, images.shape[1:])``, used block by block as it is made."""
    return _add_normal_noise(images, seeds, GAUSSIAN_SIGMA[severity], multiplicative=False)


def _add_normal_noise(images: torch.Tensor, seeds: torch.Tensor, sigma: float, multiplicative: bool) -> torch.Tensor:
    """clamp(x + sigma * z, 0, 1) or clamp(x + sigma * x * z, 0, 1), z = rng.normal(seeds, images.shape[1:])."""
    dtype = work_dtype(images)
    x = _flat(images)
    out = torch.empty(x.shape, dtype=dtype, device=images.device)
    for r0, r1, e0, e1, z in rng.normal_blocks(seeds, x.shape[1], stream=0, dtype=dtype):
        block, dest = x[r0:r1, e0:e1], out[r0:r1, e0:e1]
        if multiplicative:
            torch.addcmul(block, block, z, value=sigma, out=dest)
        else:
            torch.add(block, z, alpha=sigma, out=dest)
        dest.clamp_(0.0, 1.0)
    return out.view(images.shape).to(images.dtype)


def poisson_inverse_cdf(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The Poisson(rate) quantile of u: the smallest k with P(X <= k) >= u, element-wise, as float64.

    Exact inverse-CDF sampling for any rate, with tensor ops only. Used by :func:`poisson` above the table's
    rates (never by shot noise, whose rates are <= 60).

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


def _alias_tables(weights: torch.Tensor, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Walker alias tables for every row of integer ``weights`` (rows, K) that sum to K * cap, exactly.

    Column j keeps outcome j with weight threshold[j] (out of cap) and hands the rest to alias[j]. Built by
    Marsaglia's square-histogram rule, vectorised over rows: the smallest unfinished column is filled up from
    the largest. Integer arithmetic, so P(outcome) = weight / (K * cap) with no rounding."""
    rows, cols = weights.shape
    w = weights.clone()
    threshold = torch.full_like(w, cap)
    alias = torch.arange(cols).expand(rows, cols).clone()
    done = torch.zeros(rows, cols, dtype=torch.bool)
    row = torch.arange(rows)
    big = torch.iinfo(torch.int64).max
    for _ in range(cols - 1):
        small = w.masked_fill(done, big).argmin(dim=1)
        large = w.masked_fill(done, -1).argmax(dim=1)
        w_small = w[row, small]
        threshold[row, small] = w_small
        alias[row, small] = torch.where(w_small < cap, large, small)
        w[row, large] -= cap - w_small  # the sum of unfinished weights stays (unfinished columns) * cap
        done[row, small] = True
    return threshold, alias


@functools.lru_cache(maxsize=4)
def _poisson_table(device: torch.device) -> torch.Tensor:
    """Packed alias tables of Poisson(r / 16), r = 0..1024: int64 (1025 * 256,), entry = threshold << 8 | alias.

    Outcome probabilities are the float64 pmf exp(k log(rate) - rate - lgamma(k + 1)) (scipy's formula),
    normalised, summed left to right into the CDF, rounded to multiples of 2**-53 and differenced: each is the pmf
    to ~1e-16 plus the pmf's own rounding. Not from torch's ``gammaincc``, which is off by up to ~1e-10 at some
    (k, rate).
    Built once per device (~0.2 s, on CPU)."""
    rates = torch.arange(_TABLE_MAX_RATE * _GRID + 1, dtype=torch.float64).div_(_GRID).unsqueeze(1)
    outcomes = torch.arange(1 << _COLUMN_BITS, dtype=torch.float64)
    pmf = torch.exp(torch.special.xlogy(outcomes, rates) - rates - torch.lgamma(outcomes + 1.0))
    cdf = torch.cumsum(pmf / pmf.sum(dim=1, keepdim=True), dim=1)  # P(X > 255) < 2**-53 at rate 64
    scaled = torch.round(cdf * 2.0 ** _PROB_BITS).to(torch.int64)
    weights = torch.diff(scaled, dim=1, prepend=torch.zeros_like(scaled[:, :1]))
    mode = weights.argmax(dim=1, keepdim=True)  # the few units of rounding slack go to the likeliest outcome
    weights.scatter_add_(1, mode, (1 << _PROB_BITS) - weights.sum(dim=1, keepdim=True))
    threshold, alias = _alias_tables(weights, 1 << _CAP_BITS)
    return ((threshold << _COLUMN_BITS) | alias).view(-1).to(device)


def _poisson_chunk(rate: torch.Tensor, first: rng.Words, offset: int):
    """The table part of :func:`_poisson_fill` for rate (N, m) float64 in [0, 64], elements offset..offset+m-1.

    Returns (counts int64 (N, m), flat positions of the ~6 % of elements whose residual may be > 0, their low
    11 bits, their residual rate rho)."""
    n, count = rate.shape
    word = first.range(offset, offset + count)
    grid = torch.mul(rate, _GRID).to(torch.int64)  # floor: rate >= 0
    column = torch.bitwise_right_shift(word, 64 - _COLUMN_BITS).bitwise_and_((1 << _COLUMN_BITS) - 1)
    index = torch.bitwise_left_shift(grid, _COLUMN_BITS).bitwise_or_(column).view(-1)
    entry = torch.gather(_poisson_table(rate.device), 0, index).view(n, count)
    # Keep the column iff v < threshold, v = bits 11..55 of the word; (v << 8 | 255) - entry is negative exactly
    # then, so its sign bit spread over 64 bits selects column or alias without a compare-and-where.
    keep = torch.bitwise_right_shift(word, _RESIDUAL_BITS - _COLUMN_BITS) \
        .bitwise_and_(((1 << _CAP_BITS) - 1) << _COLUMN_BITS).bitwise_or_((1 << _COLUMN_BITS) - 1) \
        .sub_(entry).bitwise_right_shift_(63)
    alias = entry.bitwise_and_((1 << _COLUMN_BITS) - 1)
    counts = column.bitwise_xor_(alias).bitwise_and_(keep).bitwise_xor_(alias)  # keep ? column : alias
    low = word.bitwise_and_((1 << _RESIDUAL_BITS) - 1).view(-1)
    flat = (low >= _RESIDUAL_ZERO_BELOW).nonzero().squeeze(1)
    rho = (torch.index_select(rate.view(-1), 0, flat)
           - torch.index_select(grid.view(-1), 0, flat).to(torch.float64) / _GRID)
    return counts, flat, torch.index_select(low, 0, flat), rho


_U11, _U56 = np.uint64(_RESIDUAL_BITS), np.uint64(64 - _COLUMN_BITS)
_CAP_MASK = np.uint64((1 << _CAP_BITS) - 1)
_LOW_MASK = np.uint64((1 << _RESIDUAL_BITS) - 1)


def shot_table_loop(values, photons, keys, gamma, table, counts, element, low, rho, flagged, start, stop):
    """:func:`_poisson_chunk` for shot noise, whole images at once, as one compiled loop (for
    :func:`corruptions.kernels.run_compiled`): for images start..stop-1 of ``values`` (N, m), word e of the image
    (:func:`corruptions.kernels.word`), rate = clamp(x, 0, 1) * photons in float64
    (NaN: 0), the alias-table count into ``counts``; the elements whose residual may be > 0 are listed per image:
    ``element[i, :flagged[i]]`` with their ``low`` bits and ``rho``. Same integers and floats as the torch ops."""
    for i in range(start, stop):
        found = 0
        for e in range(values.shape[1]):
            x = np.float64(values[i, e])
            rate = min(max(x, 0.0), 1.0) * photons if x == x else 0.0
            z = kernels.word(keys[i], e, gamma)
            grid = np.int64(rate * _GRID)
            column = np.int64(z >> _U56)
            entry = table[(grid << _COLUMN_BITS) | column]
            keep = np.int64((z >> _U11) & _CAP_MASK) < (entry >> _COLUMN_BITS)  # bits 11..55 < threshold
            counts[i, e] = column if keep else entry & ((1 << _COLUMN_BITS) - 1)
            bits = np.int64(z & _LOW_MASK)
            if bits >= _RESIDUAL_ZERO_BELOW:
                element[i, found] = e
                low[i, found] = bits
                rho[i, found] = rate - np.float64(grid) / _GRID
                found += 1
        flagged[i] = found


def _shot_table_compiled(out: torch.Tensor, values: torch.Tensor, first: rng.Words, photons: float):
    """The table pass of :func:`_poisson_fill` for shot noise by :func:`shot_table_loop` on CPU: fills ``out``
    with the table counts, returns (image, element, low, rho) of the elements that need a residual."""
    n, m = values.shape
    element, low = np.empty((n, m), dtype=np.int64), np.empty((n, m), dtype=np.int64)  # only ~6 % get written
    rho, flagged = np.empty((n, m), dtype=np.float64), np.zeros(n, dtype=np.int64)
    kernels.run_compiled(shot_table_loop, n, values.contiguous().numpy(), float(photons), *first.uint64_key_gamma(),
                         _poisson_table(values.device).numpy(), out.numpy(), element, low, rho, flagged)
    lists = [[torch.from_numpy(a[i, :f]) for i, f in enumerate(flagged.tolist())] for a in (element, low, rho)]
    return (torch.repeat_interleave(torch.arange(n), torch.from_numpy(flagged)), *(torch.cat(p) for p in lists))


def residual_walk_loop(u, pmf, rho, extra, start, stop):
    """The pmf walk of :func:`_poisson_residual` for elements start..stop-1, compiled (for
    :func:`corruptions.kernels.run_compiled`): the same float64 steps per element, ``pmf`` (exp(-rho)) overwritten."""
    for j in range(start, stop):
        cdf = pmf[j]
        step = 0
        while u[j] >= cdf and step < _POISSON_MAX_STEPS - 1:
            step += 1
            pmf[j] = pmf[j] * rho[j] / step
            cdf += pmf[j]
        extra[j] = step


def _poisson_residual(low: torch.Tensor, fine_words: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Poisson(rho) counts (int64) by inverse CDF from 0, u = (low + fraction from fine_words) / 2**11."""
    fine_bits = _PROB_BITS - 1 - _RESIDUAL_BITS
    fine = torch.bitwise_right_shift(fine_words, 64 - fine_bits).bitwise_and_((1 << fine_bits) - 1)
    u = (low << fine_bits).add_(fine).to(torch.float64).mul_(2.0).add_(1.0).mul_(2.0 ** -_PROB_BITS)  # (2m+1)/2**53
    pmf = torch.exp(-rho)
    extra = torch.zeros_like(low)
    if kernels.usable(u) and len(u):
        kernels.run_compiled(residual_walk_loop, len(u), u.numpy(), pmf.numpy(), rho.numpy(), extra.numpy())
        return extra
    cdf = pmf.clone()
    active = (u >= cdf).nonzero().squeeze(1)
    for step in range(1, _POISSON_MAX_STEPS):  # a few steps: P(residual >= 9) < 2**-53 for rho < 1/16
        if active.numel() == 0:
            break
        extra[active] = step
        pmf_a = pmf[active] * rho[active] / step
        pmf[active] = pmf_a
        cdf[active] += pmf_a
        active = active[u[active] >= cdf[active]]
    return extra


def _poisson_fill(out: torch.Tensor, values: torch.Tensor, seeds: torch.Tensor, stream: int,
                  photons: float | None = None) -> torch.Tensor:
    """out (N, m) <- Poisson(values) counts, or for shot noise Poisson(clamp(values, 0, 1) * photons) / photons.

    rate = g / 16 + rho with rho in [0, 1/16), and Poisson(rate) = Poisson(g / 16) + Poisson(rho) for independent
    terms. The first: Walker's alias method on the precomputed table row g, from the top 53 bits of the element's
    word in stream ``stream`` (8 pick a column, 45 decide between it and its alias): exact, one table read, no
    search. The second: inverse CDF from 0 with u = (low 11 bits + fraction) / 2**11; it is 0 whenever the low
    bits are below 1923, so only the other ~6 % of elements take a word of stream ``stream + 1`` for the fraction
    and walk the pmf (all of them at once, after the table pass). Rates above 64 (never in shot noise) are redone
    exactly by :func:`poisson_inverse_cdf` from their first word. NaN and negative rates count as 0.

    The table pass runs in chunks on CPU (a band of columns of all images, ~128k elements) so temporaries stay in
    cache and the only large allocation is ``out``; in one chunk on a GPU."""
    n, count = values.shape
    if out.numel() == 0:
        return out
    first = rng.Words(seeds, stream)
    if photons is not None and out.is_contiguous() and kernels.usable(out, values):
        image, element, low, rho = _shot_table_compiled(out, values, first, photons)
        return _add_residuals(out, seeds, stream, image, element, low, rho).div_(photons)
    images, elements, lows, rhos, big = [], [], [], [], []
    for c0, c1 in _bands(n, count, values.device):
        rate = torch.nan_to_num(values[:, c0:c1].to(torch.float64), nan=0.0).contiguous()
        if photons is None:
            rate.clamp_(min=0.0)
        else:
            rate.clamp_(0.0, 1.0).mul_(photons)  # exact in float64 for float32 values
        if photons is None and bool((rate > _TABLE_MAX_RATE).any()):
            flat = (rate > _TABLE_MAX_RATE).view(-1).nonzero().squeeze(1)
            big.append((flat // (c1 - c0), flat % (c1 - c0) + c0, rate.view(-1)[flat]))
            rate.clamp_(max=_TABLE_MAX_RATE)
        counts, flat, low, rho = _poisson_chunk(rate, first, c0)
        out[:, c0:c1].copy_(counts)
        images.append(flat // (c1 - c0))
        elements.append(flat % (c1 - c0) + c0)
        lows.append(low)
        rhos.append(rho)
    _add_residuals(out, seeds, stream, torch.cat(images), torch.cat(elements), torch.cat(lows), torch.cat(rhos))
    for image, element, rate in big:
        u = rng.unit_float64(first.at(image, element))
        out[image, element] = poisson_inverse_cdf(rate, u).to(out.dtype)
    return out.div_(photons) if photons is not None else out


def _add_residuals(out: torch.Tensor, seeds: torch.Tensor, stream: int, image: torch.Tensor, element: torch.Tensor,
                   low: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """out[image, element] += Poisson(rho) from ``low`` and a word of stream ``stream + 1`` (the second term of
    :func:`_poisson_fill`)."""
    if image.numel():
        fine_words = rng.Words(seeds, stream + 1).at(image, element)
        extra = _poisson_residual(low, fine_words, rho)
        out.view(-1).index_add_(0, image * out.shape[1] + element, extra.to(out.dtype))  # each position once
    return out


def poisson(rate: torch.Tensor, seeds: torch.Tensor, stream: int = 0) -> torch.Tensor:
    """Poisson(rate) counts (float64, same shape as rate (N, ...)), exact in distribution, from image i's seed.

    Why not ``torch.poisson``: it needs a stateful generator, which ties the noise to batch composition and
    device. Each element's count depends only on its rate, its index and its image's seed (streams ``stream``
    and ``stream + 1``). Rates <= 64: alias tables (:func:`_poisson_chunk`, a few ns per element); larger rates:
    the exact inverse CDF of :func:`poisson_inverse_cdf`. NaN and negative rates count as 0.
    """
    values = _flat(rate)
    out = torch.empty(values.shape, dtype=torch.float64, device=rate.device)
    return _poisson_fill(out, values, seeds, stream).view(rate.shape)


@register_corruption("shot_noise", category="noise", benchmark="imagenet_c", random=True,
                     params={s: {"photons": v} for s, v in SHOT_PHOTONS.items()})
def shot_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Photon noise Poisson(x * c) / c per pixel and channel (spec §3.2); size-independent.

    Sampled exactly by the alias-table Poisson sampler (rate x * c computed in float64, exact for float32 x)."""
    out = torch.empty(images.shape, dtype=work_dtype(images), device=images.device)
    _poisson_fill(_flat(out), _flat(images), seeds, 0, photons=float(SHOT_PHOTONS[severity]))
    return out.clamp_(0.0, 1.0).to(images.dtype)


@register_corruption("impulse_noise", category="noise", benchmark="imagenet_c", random=True,
                     params={s: {"amount": v} for s, v in IMPULSE_AMOUNT.items()})
def impulse_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Salt-and-pepper noise (spec §3.3): each channel value independently becomes 0 or 1 (even odds) with
    probability p, as scikit-image's ``random_noise(mode='s&p')``; size-independent.

    One 23-bit uniform integer r per value (the bits ``rng.uniform`` would use) decides both: r < S -> salt (1),
    S <= r < 2S -> pepper (0), else kept, with S = round(p / 2 * 2**23): the same per-value distribution as
    skimage's two Bernoulli masks (flip with p, then salt with 1/2). Written chunk by chunk into the output, on
    the float bit patterns (a compare-and-select costs several times more on CPU); on CPU by
    :func:`impulse_loop`, which makes each word where it is used (~5x less time, the same bits)."""
    flat = _flat(images)
    n, count = flat.shape
    out = torch.empty(flat.shape, dtype=flat.dtype, device=flat.device)
    salt_below = round(IMPULSE_AMOUNT[severity] / 2 * 2 ** 23)
    words = rng.Words(seeds, stream=0)
    if kernels.usable(flat) and flat.dtype in (torch.float32, torch.float64):
        keys, gamma = words.uint64_key_gamma()
        kernels.run_compiled(impulse_loop, n, flat.contiguous().numpy(), keys, gamma, salt_below, out.numpy())
        return out.view(images.shape)
    bits_type = {2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    one_bits = int(torch.ones((), dtype=flat.dtype).view(bits_type))
    for w0, w1 in _bands(n, (count + 1) // 2, images.device):
        e0, e1 = 2 * w0, min(count, 2 * w1)
        r = words.range(w0, w1).view(torch.int32).bitwise_and_(0x7FFFFF)[:, :e1 - e0]  # 2 values per word
        flipped = torch.sub(r, 2 * salt_below).bitwise_right_shift_(31).to(bits_type)  # all ones where r < 2S
        salted = r.sub_(salt_below).bitwise_right_shift_(31).to(bits_type).bitwise_and_(one_bits)  # 1.0 where r < S
        torch.bitwise_and(flat[:, e0:e1].view(bits_type), flipped.bitwise_not_(), out=out[:, e0:e1].view(bits_type))
        out[:, e0:e1].view(bits_type).bitwise_or_(salted)
    return out.view(images.shape).clamp_(0.0, 1.0)


def impulse_loop(flat, keys, gamma, salt_below, out, start, stop):
    """:func:`impulse_noise` for images start..stop-1, compiled: value p's 23 bits from half p % 2 of word p // 2
    (the low half first, as the torch route's int32 view of the words); salt (1) below S, pepper (0) below 2S,
    else the value clipped to [0, 1] (NaN stays NaN)."""
    count = flat.shape[1]
    bits, shift = np.uint64(0x7FFFFF), np.uint64(32)
    salt, pepper = np.uint64(salt_below), np.uint64(2 * salt_below)
    for i in range(start, stop):
        x, o = flat[i], out[i]
        for p in range(count):
            z = kernels.word(keys[i], p >> 1, gamma)  # made per value, not per pair: this loop vectorises (3.5x)
            r = (z >> shift if p & 1 else z) & bits
            v = x[p]
            if r < salt:
                o[p] = 1.0
            elif r < pepper or v <= 0.0:
                o[p] = 0.0
            else:
                o[p] = 1.0 if v > 1.0 else v


@register_corruption("speckle_noise", category="noise", benchmark="imagenet_c_extra", random=True,
                     params={s: {"sigma": v} for s, v in SPECKLE_SIGMA.items()})
def speckle_noise(images: torch.Tensor, severity: int, seeds: torch.Tensor) -> torch.Tensor:
    """Multiplicative Gaussian noise x + x * N(0, sigma), per pixel and channel (spec §4.1); size-independent."""
    return _add_normal_noise(images, seeds, SPECKLE_SIGMA[severity], multiplicative=True)
