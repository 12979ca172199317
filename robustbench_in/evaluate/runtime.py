"""The ``runtime`` config group: where and how fast to run (device, batch, workers, precision, memory format,
compilation, the decoded-image cache).

None of these settings changes a result beyond floating-point rounding, except precision, which is part of each
cell's identity. What depends on the machine (``auto`` device, precision, batch size) is derived here, once.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Optional

import torch


class Precision(str, Enum):
    auto = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CACHE_MODES = ("auto", "device", "host", "stream")
# batch_size=null on CPU: a 32-image batch's float copies (19 MB) stay closer to the cache than 64's; ImageNet-C on
# 2 cores ran ~8% faster end to end than at 64 or 16, the model alone no slower (BENCHMARKS.md, 2026-12-02)
CPU_BATCH = 32


@dataclass
class Runtime:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: Optional[int] = None  # null = 32 on CPU; on CUDA the largest power of two <= 512 that fits
    workers: int = 2
    precision: Precision = Precision.auto
    channels_last: Optional[bool] = None  # null = on (CPU and CUDA: the faster memory format for convnets)
    compile: bool = False  # torch.compile the model (first batch pays the compilation)
    cache: str = "auto"  # decoded shard: device | host (pinned on CUDA) | stream; auto = device on CUDA, else stream
    cache_mb: Optional[int] = None  # the cache's budget (null = 40% of free device memory / 25% of free host RAM)
    shard_size: int = 2048
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for key, low in (("batch_size", 1), ("shard_size", 1), ("workers", 0), ("cache_mb", 0)):
            value = getattr(self, key)
            if isinstance(value, int) and value < low:
                raise ValueError(f"runtime.{key}={value} must be >= {low}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"runtime.cache={self.cache} is not a mode: use {', '.join(CACHE_MODES)}")
        if self.device not in ("auto", "???"):
            try:
                device = torch.device(self.device)
            except RuntimeError:
                raise ValueError(f"runtime.device={self.device} is not a device: use auto, cpu, cuda or "
                                 "cuda:N") from None
            if device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError(f"runtime.device={self.device} but CUDA is not available: use runtime.device=auto "
                                 "or cpu")

    @property
    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def resolved_precision(self) -> str:
        value = getattr(self.precision, "value", self.precision)
        if value == "auto":
            return "bf16" if self.torch_device.type == "cuda" else "fp32"
        return value

    @property
    def use_channels_last(self) -> bool:
        return True if self.channels_last is None else bool(self.channels_last)

    @property
    def first_batch_size(self) -> int:
        """The configured batch, or (null) the CPU default; on CUDA the engine probes upward from it."""
        return self.batch_size or CPU_BATCH

    @property
    def show_progress(self) -> bool:
        return bool(self.progress) and sys.stderr.isatty()

    def autocast(self):
        """bf16/fp16 autocast on CUDA; nothing elsewhere (CPU autocast is slower than fp32 for these models)."""
        dtype = AUTOCAST_DTYPES.get(self.resolved_precision)
        if self.torch_device.type == "cuda" and dtype is not None:
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()
