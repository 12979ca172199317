"""Counter-based randomness: every random number is a hash of (image seed, stream, element index).

Why: the same image must get the same corruption whatever the batch size, batch order, worker count or
device. A per-image seed plus a stateless integer hash gives exactly that, is identical on CPU and GPU,
and needs no Python loop over images. All arithmetic stays in int64 without overflow (32-bit lanes).
"""

from __future__ import annotations

import math
import zlib

import torch

_MASK32 = 0xFFFFFFFF


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


def _bits(seeds: torch.Tensor, shape: tuple[int, ...], stream: int) -> torch.Tensor:
    """Random uint32 values (as int64) of shape (N, *shape): element j of image i depends only on seeds[i]."""
    n = seeds.shape[0]
    count = math.prod(shape)
    idx = torch.arange(count, device=seeds.device, dtype=torch.int64).view(1, *shape)
    key = hash32(seeds.view(n, *([1] * len(shape))) ^ hash32(torch.tensor(stream * 0x9E3779B9 + 1,
                                                                          device=seeds.device)))
    return hash32(hash32(idx ^ key) + key)


def uniform(seeds: torch.Tensor, shape: tuple[int, ...], stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) of shape (N, *shape) with 24 random bits; ``stream`` separates independent draws."""
    return ((_bits(seeds, tuple(shape), stream) >> 8).to(dtype) + 0.5) * (2.0 ** -24)


def normal(seeds: torch.Tensor, shape: tuple[int, ...], stream: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Standard normal of shape (N, *shape) by Box-Muller from two independent uniform streams."""
    u1 = uniform(seeds, shape, 2 * stream + 1000, torch.float64)
    u2 = uniform(seeds, shape, 2 * stream + 1001, torch.float64)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def randint(seeds: torch.Tensor, low: int, high: int, shape: tuple[int, ...] = (), stream: int = 0) -> torch.Tensor:
    """Integers in [low, high) of shape (N, *shape)."""
    u = uniform(seeds, tuple(shape) if shape else (1,), stream, torch.float64)
    out = (low + torch.floor(u * (high - low))).to(torch.int64).clamp_(low, high - 1)
    return out if shape else out.view(-1)


def per_image_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator for one image, for the rare op that needs torch's own samplers (e.g. Poisson)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
