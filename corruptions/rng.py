"""Counter-based randomness: every random number is a hash of (image seed, stream, element index).

Why: the same image must get the same corruption whatever the batch size, batch order, worker count or
device. A per-image seed plus a stateless integer hash gives exactly that, is identical on CPU and GPU,
and needs no Python loop over images.

Generator (SplitMix64 by Steele, Lea & Flood, used as a counter-based hash): image i and stream s get a 64-bit
key ``k = mix64(mix64(seed_i + A) ^ salt(s))`` and an odd increment ``gamma(s)``; the 64-bit word number j
(j = 0, 1, ...) is ``mix64(k + (j + 1) * gamma(s)) mod 2**64``, with ``mix64`` the SplitMix64 finaliser. Torch
has no unsigned 64-bit shifts, so the words live in int64: products wrap modulo 2**64 (two's complement, as
every CPU and GPU torch runs on does; ``tests/test_rng.py`` pins known values to catch a platform that
differs) and logical right shifts are arithmetic shifts with the sign bits masked off.

One word gives two float32 values (uniform: 23 bits each; normal: one Box-Muller pair, r cos t and r sin t,
from 23 bits of each 32-bit half) or one float64 value (52 bits). On CPU the work runs in cache-sized blocks
with in-place ops (large int64 temporaries and two hash rounds per value made an earlier version ~15x
slower); on a GPU in one block.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, SplitMix64's default increment
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64 finaliser multipliers
MIX64_MULTIPLIERS = (_MIX_1, _MIX_2)  # for compiled loops that hash words themselves (uint64 arithmetic)
_SEED_OFFSET = 0x6A09E667F3BCC909  # fractional bits of sqrt(2): keeps seed 0 away from key 0
_KIND_UNIFORM, _KIND_NORMAL = 0x51_7CC1_B727_220A, 0x2545_F491_4F6C_DD1D  # normal(s) never reuses uniform(s)'s bits
_CPU_BLOCK = 1 << 17  # 64-bit words per block on CPU: temporaries stay in cache, ops are big enough for 2+ threads
_CACHED_STEPS = 1 << 17  # counter sequences up to this length are cached (1 MiB each, at most 64 of them)


def _signed64(v: int) -> int:
    """A uint64 value as the int64 with the same bits (what torch stores)."""
    v &= _MASK64
    return v - (1 << 64) if v >> 63 else v


def _mix64_int(v: int) -> int:
    """SplitMix64's finaliser on a Python int (for per-stream constants)."""
    v &= _MASK64
    v = ((v ^ (v >> 30)) * _MIX_1) & _MASK64
    v = ((v ^ (v >> 27)) * _MIX_2) & _MASK64
    return v ^ (v >> 31)


_M1, _M2 = _signed64(_MIX_1), _signed64(_MIX_2)


def _xorshift_right_(z: torch.Tensor, shift: int, tmp: torch.Tensor) -> None:
    """z ^= z >>> shift (logical shift) in place: arithmetic shift, then the sign-extended bits masked off."""
    torch.bitwise_right_shift(z, shift, out=tmp)
    tmp.bitwise_and_((1 << (64 - shift)) - 1)
    z.bitwise_xor_(tmp)


def _mix64_(z: torch.Tensor, tmp: torch.Tensor | None = None) -> torch.Tensor:
    """SplitMix64's finaliser in place on int64 words (wrapping products); ``tmp``: optional scratch like z."""
    tmp = torch.empty_like(z) if tmp is None else tmp
    _xorshift_right_(z, 30, tmp)
    z.mul_(_M1)
    _xorshift_right_(z, 27, tmp)
    z.mul_(_M2)
    _xorshift_right_(z, 31, tmp)
    return z


def _stream_constants(stream: int, kind: int) -> tuple[int, int]:
    """(salt, gamma) of a stream: a well-mixed 64-bit salt and an odd increment with many bit transitions.

    A per-stream gamma (as SplittableRandom's ``mixGamma``) makes two streams of an image different sequences,
    not shifted copies of one."""
    base = (int(stream) * _GOLDEN_GAMMA + kind) & _MASK64
    salt = _mix64_int(base)
    gamma = _mix64_int(base ^ 0xD1B54A32D192ED03) | 1
    if bin(gamma ^ (gamma >> 1)).count("1") < 24:  # too few transitions: a weak Weyl increment
        gamma ^= 0xAAAAAAAAAAAAAAAA
    return _signed64(salt), _signed64(gamma)


def _keys(seeds: torch.Tensor, salt: int) -> torch.Tensor:
    """The per-image 64-bit keys (N, 1) for one stream: a function of that image's seed only."""
    keys = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1, 1) + _signed64(_SEED_OFFSET)
    _mix64_(keys)
    keys.bitwise_xor_(salt)
    return _mix64_(keys)


def _block_size(device: torch.device) -> int:
    return _CPU_BLOCK if device.type == "cpu" else 1 << 62


@functools.lru_cache(maxsize=64)
def _steps(length: int, gamma: int, device: torch.device) -> torch.Tensor:
    """(1, length) int64: (j + 1) * gamma mod 2**64 for j < length (cached: the same for every block and image)."""
    counters = torch.arange(1, length + 1, device=device, dtype=torch.int64)
    return counters.mul_(gamma).view(1, length)


def _words(keys: torch.Tensor, start: int, stop: int, gamma: int, out: torch.Tensor | None = None,
           tmp: torch.Tensor | None = None, block: int | None = None) -> torch.Tensor:
    """Words start..stop-1 of every key's sequence: int64 (rows, stop - start), written into ``out`` if given.

    Word j is mix64(key + (j + 1) * gamma) = mix64((key + start * gamma) + (j - start + 1) * gamma)."""
    length = stop - start
    if max(length, block or 0) <= _CACHED_STEPS:
        steps = _steps(max(length, block or 0), gamma, keys.device)[:, :length]
    else:
        steps = torch.arange(1, length + 1, device=keys.device, dtype=torch.int64).mul_(gamma)
    if out is None:
        out = torch.empty((keys.shape[0], length), device=keys.device, dtype=torch.int64)
    torch.add(keys + _signed64(start * gamma), steps, out=out)  # wrapping int64 arithmetic
    return _mix64_(out, tmp)


def _blocks(rows: int, cols: int, block: int):
    """(r0, r1, c0, c1) tiles of a rows x cols grid with about ``block`` cells each, row-major."""
    if cols >= block:
        for r in range(rows):
            for c0 in range(0, cols, block):
                yield r, r + 1, c0, min(cols, c0 + block)
    else:
        step = max(1, block // max(cols, 1))
        for r0 in range(0, rows, step):
            yield r0, min(rows, r0 + step), 0, cols


def _word_blocks(seeds: torch.Tensor, words: int, kind: int, stream: int):
    """Yield (r0, r1, c0, c1, z): the words z = grid[r0:r1, c0:c1] of the (N, words) grid of 64-bit words (rows:
    images), block by block; z is scratch memory, overwritten by the next block (use it or copy it first)."""
    salt, gamma = _stream_constants(stream, kind)
    keys = _keys(seeds, salt)
    block = _block_size(keys.device)
    z_buf = tmp_buf = None
    for r0, r1, c0, c1 in _blocks(keys.shape[0], words, block):
        size = (r1 - r0) * (c1 - c0)
        if z_buf is None or z_buf.numel() < size:
            z_buf = torch.empty(size, device=keys.device, dtype=torch.int64)
            tmp_buf = torch.empty_like(z_buf)
        z = _words(keys[r0:r1], c0, c1, gamma, z_buf[:size].view(r1 - r0, c1 - c0),
                   tmp_buf[:size].view(r1 - r0, c1 - c0), block=min(block, words))
        yield r0, r1, c0, c1, z


def bits(seeds: torch.Tensor, shape: tuple[int, ...], stream: int = 0) -> torch.Tensor:
    """Raw random 64-bit words as int64 of shape (N, *shape), one per element (use any bits: all are mixed)."""
    shape = tuple(shape)
    n, count = int(seeds.shape[0]), math.prod(shape)
    out = torch.empty((n, count), device=seeds.device, dtype=torch.int64)
    for r0, r1, c0, c1, z in _word_blocks(seeds, count, _KIND_UNIFORM, stream):
        out[r0:r1, c0:c1] = z
    return out.view(n, *shape)


class Words:
    """The 64-bit words of one stream of every image, addressable by element index: for draws done in chunks or
    only where needed. ``Words(seeds, s).range(a, b)`` equals ``bits(seeds, shape, s).view(N, -1)[:, a:b]``."""

    def __init__(self, seeds: torch.Tensor, stream: int = 0):
        salt, self.gamma = _stream_constants(stream, _KIND_UNIFORM)
        self.keys = _keys(seeds, salt)  # (N, 1)

    def range(self, start: int, stop: int) -> torch.Tensor:
        """Words start..stop-1 of every image: int64 (N, stop - start)."""
        return _words(self.keys, start, stop, self.gamma)

    def uint64_key_gamma(self) -> tuple[np.ndarray, np.uint64]:
        """(keys as uint64 (N,), gamma as uint64) for a compiled loop that makes word j of image i itself:
        ``mix64(keys[i] + (j + 1) * gamma)`` with :data:`MIX64_MULTIPLIERS`, wrapping modulo 2**64."""
        return self.keys.view(-1).cpu().numpy().view(np.uint64), np.uint64(self.gamma & _MASK64)

    def at(self, image: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Word ``index[m]`` of image ``image[m]`` (tensors of equal shape): int64, same shape."""
        return _mix64_(torch.add(self.keys.view(-1)[image], index + 1, alpha=self.gamma))


def unit_float64(words: torch.Tensor) -> torch.Tensor:
    """Words -> float64 uniforms in (0, 1) exactly as ``uniform(..., dtype=torch.float64)`` makes them."""
    return _unit_float64_(words.clone(), torch.empty(words.shape, dtype=torch.float64, device=words.device))


def _unit_float64_(z: torch.Tensor, dest: torch.Tensor) -> torch.Tensor:
    """(2k + 1) / 2**53 for k = the top 52 bits of each word: exact float64 in (0, 1), symmetric about 1/2.

    Bit trick: exponent bits of 1.0 under 52 random mantissa bits give 1 + k / 2**52 in [1, 2)."""
    z.bitwise_right_shift_(12).bitwise_and_((1 << 52) - 1).bitwise_or_(0x3FF0000000000000)
    return torch.sub(z.view(torch.float64), 1.0 - 2.0 ** -53, out=dest)


def uniform(seeds: torch.Tensor, shape: tuple[int, ...], stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """U(0, 1) of shape (N, *shape), never exactly 0 or 1; ``stream`` separates independent draws.

    float64: 52 random bits per value (one word each); other dtypes: float32 values with 23 random bits,
    (2k + 1) / 2**24 (two per word: element 2j from the low half of word j), converted to ``dtype`` (a half type
    may round the largest values to 1)."""
    shape = tuple(shape)
    n, count = int(seeds.shape[0]), math.prod(shape)
    if dtype == torch.float64:
        out = torch.empty((n, count), device=seeds.device, dtype=torch.float64)
        for r0, r1, c0, c1, z in _word_blocks(seeds, count, _KIND_UNIFORM, stream):
            _unit_float64_(z, out[r0:r1, c0:c1])
        return out.view(n, *shape)
    words = (count + 1) // 2
    out = torch.empty((n, 2 * words), device=seeds.device, dtype=torch.float32)
    for r0, r1, c0, c1, z in _word_blocks(seeds, words, _KIND_UNIFORM, stream):
        halves = z.view(torch.int32)  # (rows, 2 * cols): low then high 32 bits of each word
        halves.bitwise_and_(0x7FFFFF).bitwise_or_(0x3F800000)  # 1 + k / 2**23 as float32 bits
        torch.sub(halves.view(torch.float32), 1.0 - 2.0 ** -24, out=out[r0:r1, 2 * c0:2 * c1])
    out = out if count == 2 * words else out[:, :count].contiguous()
    return out.view(n, *shape).to(dtype)


def normal_blocks(seeds: torch.Tensor, count: int, stream: int = 0, dtype=torch.float32):
    """Yield (r0, r1, e0, e1, values): ``normal(seeds, (count,), stream, dtype)[r0:r1, e0:e1]`` block by block, so
    a caller can use each cache-sized block at once (e.g. add it to its images) instead of a full-size tensor.
    ``values`` (float32, or float64 when asked) is scratch memory, overwritten by the next block."""
    pairs = (count + 1) // 2
    wide = dtype == torch.float64
    work = torch.float64 if wide else torch.float32
    for r0, r1, c0, c1, z in _word_blocks(seeds, 2 * pairs if wide else pairs, _KIND_NORMAL, stream):
        rows = r1 - r0
        if wide:  # word 2j -> radius, word 2j + 1 -> angle
            z = z.view(rows, -1, 2)
            radius = _unit_float64_(z[..., 0], torch.empty(z.shape[:2], device=z.device, dtype=work))
            angle = _unit_float64_(z[..., 1], torch.empty_like(radius)).mul_(2.0 * math.pi)
            e0, e1 = c0, c1
        else:  # low 23 bits of each 32-bit half under the exponent of 1.0: floats 1 + k / 2**23 in [1, 2)
            halves = z.view(torch.int32).bitwise_and_(0x7FFFFF).bitwise_or_(0x3F800000)
            ones_to_twos = halves.view(torch.float32).view(rows, c1 - c0, 2)
            radius = torch.sub(2.0, ones_to_twos[..., 1])  # high half -> u1 in (0, 1]
            angle = torch.mul(ones_to_twos[..., 0], 2.0 * math.pi)  # low half -> 2 pi (1 + k / 2**23), same cos/sin
            e0, e1 = 2 * c0, 2 * c1
        radius.log_().mul_(-2.0).sqrt_()
        values = torch.empty((rows, radius.shape[1], 2), device=z.device, dtype=work)
        torch.mul(torch.cos(angle), radius, out=values[..., 0])
        torch.mul(angle.sin_(), radius, out=values[..., 1])
        e1 = min(e1, count)
        yield r0, r1, e0, e1, values.view(rows, 2 * radius.shape[1])[:, :e1 - e0]


def normal(seeds: torch.Tensor, shape: tuple[int, ...], stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Standard normal of shape (N, *shape) by Box-Muller: element 2j is r cos(t), element 2j + 1 is r sin(t).

    float64: u1 and t from two words (52 bits each; |values| < 8.6); other dtypes: computed in float32 from one
    word, u1 and t from 23 bits of its high and low halves (|values| < 5.7), converted to ``dtype``.
    """
    shape = tuple(shape)
    n, count = int(seeds.shape[0]), math.prod(shape)
    out = torch.empty((n, count), device=seeds.device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    for r0, r1, e0, e1, values in normal_blocks(seeds, count, stream, dtype):
        out[r0:r1, e0:e1] = values
    return out.view(n, *shape).to(dtype)


def randint(seeds: torch.Tensor, low: int, high: int, shape: tuple[int, ...] = (), stream: int = 0) -> torch.Tensor:
    """Integers in [low, high) of shape (N, *shape) (shape () gives (N,)), from 52-bit uniforms."""
    u = uniform(seeds, tuple(shape) if shape else (1,), stream, torch.float64)
    out = (low + torch.floor(u * (high - low))).to(torch.int64).clamp_(low, high - 1)
    return out if shape else out.view(-1)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32), computed in int64 without overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A well-mixing 32-bit integer hash ("lowbias32", C. Wellons) on int64 tensors holding uint32 values."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash of a string (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8")) & _MASK32


def derive_seeds(run_seed: int, image_ids: torch.Tensor, corruption: str, severity: int) -> torch.Tensor:
    """One seed per image from (run seed, image id, corruption name, severity): int64 tensor, values < 2**32."""
    ids = torch.as_tensor(image_ids, dtype=torch.int64) & _MASK32
    salt = hash32(torch.tensor([(int(run_seed) & _MASK32) ^ stable_hash(f"{corruption}/{int(severity)}")]))
    return hash32(hash32(ids ^ salt) + salt)
