"""Decoded images on their way to the device: each clean image is decoded once per run, then every cell of the
suite is produced from those uint8 pixels on the device.

Three placements for a shard's decoded images (``runtime.cache``), chosen by :func:`plan_cache` within a memory
budget and falling back in this order when it does not fit:

- ``device``: the whole shard as uint8 on the accelerator; every cell reads it with no host round trip, and the
  next shard is decoded in a background thread meanwhile (:class:`ShardPrefetch`).
- ``host``: the shard in (pinned, on CUDA) host memory, copied batch by batch on a side stream, one batch ahead.
- ``stream``: no cache; each decoded batch is scored under every cell and dropped, so peak memory is one batch
  whatever the data set's size (the CPU default: there the "device" is the host anyway).

The placement never changes a number: per-image seeds make every cell's records the same in all three.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from robustbench_in.data.loader import make_loader

DEVICE_SHARE = 0.4  # cache_mb=null: at most this share of free device memory (the model and batches need the rest)
HOST_SHARE = 0.25  # ... and of the host's available memory


@dataclass(frozen=True)
class CachePlan:
    """Where a shard's decoded images live, and why (printed once per run)."""

    mode: str  # device | host | stream
    reason: str


def available_host_bytes() -> int:
    """The host's available memory (MemAvailable), or its physical memory where /proc is missing."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def plan_cache(requested: str, device: torch.device, shard_images: int, image_bytes: int,
               budget_mb: int | None = None, free_device: int | None = None,
               free_host: int | None = None) -> CachePlan:
    """The placement for shards of ``shard_images`` images of ``image_bytes`` each. Two shards are alive at once
    (the one being scored and the next one being decoded), so two must fit the budget: ``budget_mb`` when given,
    else a share of the free device memory (``device``) or of the available host memory (``host``)."""
    need = 2 * shard_images * image_bytes
    mode = requested if requested != "auto" else ("device" if device.type == "cuda" else "stream")
    if mode == "device" and device.type != "cuda":
        mode = "host"  # on the CPU the device is the host
    if mode == "device":
        if free_device is None:
            free_device = torch.cuda.mem_get_info(device)[0]
        budget = budget_mb * 2**20 if budget_mb is not None else int(DEVICE_SHARE * free_device)
        if need <= budget:
            return CachePlan("device", f"{need / 2**20:.0f} MB of decoded images on {device}")
        mode, why = "host", f"two shards ({need / 2**20:.0f} MB) exceed the device budget ({budget / 2**20:.0f} MB); "
    else:
        why = ""
    if mode == "host":
        if free_host is None:
            free_host = available_host_bytes()
        budget = budget_mb * 2**20 if budget_mb is not None else int(HOST_SHARE * free_host)
        if need <= budget:
            return CachePlan("host", why + f"{need / 2**20:.0f} MB of decoded images in host memory")
        return CachePlan("stream", why + f"two shards ({need / 2**20:.0f} MB) exceed the host budget "
                                         f"({budget / 2**20:.0f} MB): streaming batch by batch "
                                         "(a smaller runtime.shard_size would let them fit)")
    return CachePlan("stream", "streaming batch by batch (peak memory: one batch)")


@dataclass
class DecodedShard:
    """One shard's readable images, decoded once: uint8 pixels where the plan put them, labels on the device."""

    images: torch.Tensor  # (N, 3, S, S) uint8: on the device (device), else on the host (pinned on CUDA)
    image_ids: torch.Tensor  # (N,) int64, host
    labels: torch.Tensor  # (N,) int64, host
    accepted: torch.Tensor  # (N, 1 + K) int64 on the device: the label and the alternative labels, -1 = none
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0  # decoding time the scorer waited for (0 when it was decoded in the background)


def accepted_labels(batch: dict) -> torch.Tensor:
    """(B, 1 + K): each image's label followed by its alternative labels (-1 = none)."""
    return torch.cat([batch["labels"][:, None], batch["alt_labels"]], 1)


def decode_shard(loader: Iterable[dict], n_max: int, size: int, place: torch.device,
                 device: torch.device) -> DecodedShard:
    """Decode every batch of ``loader`` into one preallocated uint8 tensor on ``place`` (no second copy)."""
    t0 = time.perf_counter()
    pin = place.type == "cpu" and device.type == "cuda"
    images = torch.empty((n_max, 3, size, size), dtype=torch.uint8, device=place, pin_memory=pin)
    ids, labels, accepted, skipped, n = [], [], [], [], 0
    for batch in loader:
        skipped.extend(batch["skipped"])
        if "images" not in batch:
            continue
        b = len(batch["images"])
        images[n:n + b].copy_(batch["images"], non_blocking=True)
        ids.append(batch["image_ids"])
        labels.append(batch["labels"])
        accepted.append(accepted_labels(batch))
        n += b
    empty = torch.zeros(0, dtype=torch.int64)
    return DecodedShard(images=images[:n], image_ids=torch.cat(ids) if ids else empty,
                        labels=torch.cat(labels) if labels else empty,
                        accepted=(torch.cat(accepted) if accepted else empty.view(0, 1)).to(device, non_blocking=True),
                        skipped=skipped, seconds=time.perf_counter() - t0)


class ShardPrefetch:
    """Decodes the next shard in a background thread while the current one is scored (the loader's workers do
    the decoding; the thread only collects their batches), so the accelerator does not wait for JPEG decoding."""

    def __init__(self, images, preprocessing, runtime, plan: CachePlan):
        self.images, self.preprocessing, self.runtime = images, preprocessing, runtime
        self.place = runtime.torch_device if plan.mode == "device" else torch.device("cpu")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rbin-decode")
        self.pending: dict[int, Future] = {}
        device = runtime.torch_device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None  # copies off the scorer's stream

    def _decode(self, shard: list[int]) -> DecodedShard:
        device = self.runtime.torch_device
        loader = make_loader(self.images, self.preprocessing, self.runtime.first_batch_size, self.runtime.workers,
                             indices=shard, pin_memory=device.type == "cuda")
        if self.stream is None:
            return decode_shard(loader, len(shard), self.preprocessing.input_size, self.place, device)
        with torch.cuda.stream(self.stream):
            decoded = decode_shard(loader, len(shard), self.preprocessing.input_size, self.place, device)
        self.stream.synchronize()
        return decoded

    def submit(self, key: int, shard: list[int]) -> None:
        if key not in self.pending:
            self.pending[key] = self.pool.submit(self._decode, shard)

    def get(self, key: int, shard: list[int]) -> DecodedShard:
        """The shard's decoded images; the time spent waiting for them is its ``seconds``."""
        t0 = time.perf_counter()
        self.submit(key, shard)
        decoded = self.pending.pop(key).result()
        decoded.seconds = time.perf_counter() - t0
        if self.stream is not None:  # made on the decode stream, read on the scorer's: free only after that
            current = torch.cuda.current_stream(self.runtime.torch_device)
            for tensor in (decoded.images, decoded.accepted):
                if tensor.is_cuda:
                    tensor.record_stream(current)
        return decoded

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pool.shutdown(wait=True)


def ahead(device: torch.device, chunks: Iterable[tuple[torch.Tensor, object]]) -> Iterator[tuple[torch.Tensor, object]]:
    """``(uint8 host images, payload)`` -> ``(uint8 images on device, payload)``, copying the next chunk on a side
    stream while the current one is being scored (CUDA); a plain move elsewhere."""
    if device.type != "cuda":
        for x, payload in chunks:
            yield x.to(device), payload
        return
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return
    if first[0].is_cuda:  # a device cache: nothing to copy
        yield first
        yield from chunks
        return
    chunks = itertools.chain([first], chunks)
    side = torch.cuda.Stream(device)
    current = torch.cuda.current_stream(device)
    queued = None
    for x, payload in chunks:
        with torch.cuda.stream(side):
            x_dev = x.to(device, non_blocking=True)
        if queued is not None:
            yield queued
        current.wait_stream(side)
        x_dev.record_stream(current)
        queued = (x_dev, payload)
    if queued is not None:
        yield queued
