"""Host memory for streaming big batches: glibc keeps what is freed and hands it out again.

Why: every batch of a CPU run allocates and frees the same large buffers (a float batch of 64 crops is 38 MB,
EfficientNet-Lite0's first activations 100 MB). glibc serves blocks over 32 MB with a fresh ``mmap`` and unmaps
them on ``free``, so each one page-faults and is zeroed by the kernel again, batch after batch. With every block
served from glibc's heap and the heap never trimmed, the buffers are reused. On the 2-core CPU here
(BENCHMARKS.md), Lite0's forward pass on a batch of 64 took 0.8 s instead of 1.2 s, and ImageNet-C ran 1.17x
faster end to end. The peak is about 550 MB higher, and it does not grow with the data set
(``benchmarks/memory.py``), since the same sizes come back every batch.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
ENV = "RBIN_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Ask glibc to serve every block from its heap (no ``mmap``) and never to trim it. Returns whether it took;
    False where the C library is not glibc (macOS, musl) or ``RBIN_KEEP_FREED_MEMORY=0`` turns it off."""
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's C library
        gnu = ctypes.CDLL(None).gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    del gnu
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
