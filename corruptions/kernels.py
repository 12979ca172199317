"""Compiled CPU loops (numba) for the steps that eager torch can only do as many passes over memory.

Why: on CPU a sequential or per-pixel step written as tensor ops pays one pass over the batch per op (glass blur's
scan became pointer jumping: a dozen gathers, index copies and nonzeros). The same loop compiled runs once over
the pixels, in cache. Each kernel here is plain Python that numba compiles on first use (``cache=True``: later
processes load it from numba's cache); its torch twin stays the definition and runs wherever the kernel does not
(GPU tensors, no numba, ``RBIN_NUMBA=0``). Tests run both routes and compare them bit for bit.

numba's cache checks only the loop's own file: after changing a helper here (:func:`word`, :func:`fma`), delete
the ``*.nbi``/``*.nbc`` files under ``corruptions/__pycache__`` so loops in other files compile anew.

Kernels are serial and release the GIL. :func:`map_spans` runs one contiguous span of images per torch thread
on a process-local pool (as for libjpeg), so no second thread runtime competes with torch's OpenMP.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from corruptions.rng import MIX64_MULTIPLIERS as _MIX

DISABLE_ENV = "RBIN_NUMBA"  # RBIN_NUMBA=0: always take the torch route (A/B timing, debugging)

_MASK64 = (1 << 64) - 1
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_jitable: list[Callable] = []  # helpers marked by :func:`jitable`, not yet registered with numba
_register_lock = threading.Lock()  # the JPEG step's spans ask for their loops from several pool threads at once


def host_pool(workers: int) -> ThreadPoolExecutor:
    """A process-local thread pool for GIL-free per-image work (libjpeg, the kernels here); rebuilt after a fork,
    whose child would otherwise inherit a pool without threads."""
    key = (os.getpid(), workers)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rbin-host")
        return _pools[key]


def map_spans(n: int, work: Callable[[range], None]) -> None:
    """``work`` over images 0..n-1 split into one contiguous span per torch thread, on :func:`host_pool`."""
    if n <= 0:
        return
    workers = min(n, max(1, torch.get_num_threads()))
    spans = [range(n * k // workers, n * (k + 1) // workers) for k in range(workers)]
    for _ in (map(work, spans) if workers == 1 else host_pool(workers).map(work, spans)):
        pass


@functools.lru_cache(maxsize=1)
def _numba():
    """The numba module, or None where it is not installed."""
    try:
        import numba
    except ImportError:
        return None
    return numba


def enabled() -> bool:
    """Whether compiled loops run: numba is installed and not switched off by ``RBIN_NUMBA=0``."""
    return os.environ.get(DISABLE_ENV, "1") != "0" and _numba() is not None


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the compiled route applies to ``tensors``: :func:`enabled`, and every tensor is on the CPU."""
    return enabled() and all(t.device.type == "cpu" for t in tensors)


@functools.lru_cache(maxsize=None)
def compiled(loop: Callable) -> Callable:
    """``loop`` compiled by numba (serial, GIL released; cached on disk by numba), on its first call."""
    with _register_lock:
        _register_helpers()
        _register_jitable()
    njit = _numba().njit
    try:
        return njit(nogil=True, cache=True)(loop)
    except RuntimeError:  # numba finds no writable cache folder (read-only install and home): compile per process
        return njit(nogil=True)(loop)


# -------------------------------------------------------------------- helpers that compiled loops may call


def word(key, index, gamma):
    """Word ``index`` of a stream of ``corruptions.rng`` (``rng.Words``): SplitMix64's finaliser of
    key + (index + 1) * gamma modulo 2**64, as uint64 (``key``/``gamma`` from ``Words.uint64_key_gamma``).
    Compiled: uint64 arithmetic. In plain Python: the same on Python ints."""
    z = (int(key) + (int(index) + 1) * int(gamma)) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX[0]) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX[1]) & _MASK64
    return np.uint64(z ^ (z >> 31))


def jitable(helper: Callable) -> Callable:
    """Mark a plain-Python ``helper`` as callable from compiled loops (numba compiles it where a loop calls it;
    Python calls run it as written). numba is imported only when a loop is compiled. Keep a helper in its loops'
    file: numba's cache of a loop notices changes to that file only."""
    _jitable.append(helper)
    return helper


def _register_jitable() -> None:
    """Register the helpers marked since the last compilation (before it: a loop's helpers are known to numba)."""
    from numba.extending import register_jitable

    while _jitable:
        register_jitable(_jitable.pop())


def fma(a, b, c):
    """a * b + c rounded once (fused multiply-add), for compiled loops that must match a torch op computing so
    (``embedding_bag``'s float32 weighted sums). Compiled: the ``llvm.fma`` instruction, operands of one float
    type. In plain Python (not used by the routes): emulated in float64, which equals it for float32 operands
    except in rare double-rounding cases."""
    return type(a)(float(a) * float(b) + float(c))


@functools.lru_cache(maxsize=1)
def _register_helpers() -> None:
    """Teach numba :func:`fma` and :func:`word` (once, before the first compilation)."""
    from numba.extending import intrinsic, overload

    m1, m2, s27, s30, s31, one = (np.uint64(v) for v in (*_MIX, 27, 30, 31, 1))

    @overload(word)
    def word_overload(key, index, gamma):
        def impl(key, index, gamma):
            z = key + (np.uint64(index) + one) * gamma
            z = (z ^ (z >> s30)) * m1
            z = (z ^ (z >> s27)) * m2
            return z ^ (z >> s31)
        return impl

    @intrinsic
    def fused(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            return builder.fma(*args)
        return a(a, b, c), codegen

    @overload(fma)
    def fma_overload(a, b, c):
        return lambda a, b, c: fused(a, b, c)


def run_compiled(loop: Callable, n: int, *args) -> None:
    """The compiled ``loop(*args, start, stop)`` over images 0..n-1, one span per thread (:func:`map_spans`).
    A loop takes numpy arrays (``tensor.numpy()`` shares the memory) and scalars, and writes its results into
    some of the arrays."""
    kernel = compiled(loop)
    map_spans(n, lambda span: kernel(*args, span.start, span.stop))
