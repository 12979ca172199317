"""The ``runtime`` config group: where and how fast to run (device, batch, workers, precision, memory format).

None of these settings changes a result beyond floating-point rounding, except precision, which is part of each
cell's identity. What depends on the machine (``auto`` device, precision and memory format) is derived here, once.
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


@dataclass
class Runtime:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 64
    workers: int = 2
    precision: Precision = Precision.auto
    channels_last: Optional[bool] = None  # null = on for CUDA
    shard_size: int = 2048
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for key, low in (("batch_size", 1), ("shard_size", 1), ("workers", 0)):
            value = getattr(self, key)
            if isinstance(value, int) and value < low:
                raise ValueError(f"runtime.{key}={value} must be >= {low}")
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
        return self.torch_device.type == "cuda" if self.channels_last is None else bool(self.channels_last)

    @property
    def show_progress(self) -> bool:
        return bool(self.progress) and sys.stderr.isatty()

    def autocast(self):
        """bf16/fp16 autocast on CUDA; nothing elsewhere (CPU autocast is slower than fp32 for these models)."""
        dtype = AUTOCAST_DTYPES.get(self.resolved_precision)
        if self.torch_device.type == "cuda" and dtype is not None:
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()
