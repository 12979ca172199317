"""Evaluation engine: decode each batch once, then produce every cell of the suite from it on the device.

dataset -> uint8 crops (CPU workers) -> device -> for each (corruption, severity) cell:
corrupt -> [faithful JPEG] -> normalise -> model -> per-image records.
The dataset is processed in shards; each finished shard is written for every cell, so a killed run
resumes at the shard where it stopped and never recomputes a finished cell.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from corruptions.registry import Corruption, apply_corruption
from corruptions.rng import derive_seeds
from robustbench_in.classes import imagenet_classes
from robustbench_in.data import ImageList, make_loader
from robustbench_in.models import ModelEntry
from robustbench_in.results import RECORD_COLUMNS, ResultStore, cell_summary, stable_hash


@dataclass(frozen=True)
class Cell:
    """One (corruption, severity) of a suite; ``corruption is None`` is the clean cell (severity 0)."""

    name: str
    severity: int
    category: str
    corruption: Corruption | None = None
    faithful_jpeg: bool = False
    jpeg_quality: int = 85

    @property
    def jpeg_mode(self) -> str:
        return f"faithful_q{self.jpeg_quality}" if self.faithful_jpeg and self.corruption is not None else "none"


@dataclass
class RunSettings:
    device: torch.device
    batch_size: int = 64
    workers: int = 2
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on CUDA only)
    channels_last: bool = False
    shard_size: int = 2048
    seed: int = 0
    progress: bool = True


@dataclass
class EvalContext:
    """Provenance copied into every result row."""

    dataset_name: str
    backend: str
    versions: str
    git_commit: str
    model_identity: dict
    extra_hash: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"runtime.device={name} but CUDA is not available: use runtime.device=auto or cpu")
    return device


def _autocast(settings: RunSettings):
    if settings.device.type == "cuda" and settings.precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if settings.precision == "bf16" else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def corrupt_batch(cell: Cell, images: torch.Tensor, image_ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Float images in [0, 1] -> the cell's version of them (same device)."""
    if cell.corruption is None:
        return images
    seeds = derive_seeds(seed, image_ids, cell.name, cell.severity)
    if cell.corruption.runs_on == "cpu" and images.device.type != "cpu":
        out = apply_corruption(cell.corruption, images.cpu(), cell.severity, seeds).to(images.device)
    else:
        out = apply_corruption(cell.corruption, images, cell.severity, seeds)
    if cell.faithful_jpeg:
        from corruptions.digital import jpeg_round_trip

        out = jpeg_round_trip(out, cell.jpeg_quality)
    return out


def cell_id(cell: Cell, entry: ModelEntry, images: ImageList, settings: RunSettings, ctx: EvalContext) -> str:
    """Everything that determines a cell's numbers — and nothing (batch size, workers) that must not."""
    return stable_hash({
        "model": ctx.model_identity, "preprocessing": entry.preprocessing.as_dict(),
        "dataset": [images.name, images.root, len(images.items), stable_hash([i.key for i in images.items])],
        "corruption": cell.name, "severity": cell.severity, "jpeg": cell.jpeg_mode,
        "params": repr(cell.corruption.params) if cell.corruption else "", "seed": settings.seed,
        "precision": settings.precision, "backend": ctx.backend, **ctx.extra_hash,
    })


def evaluate(entry: ModelEntry, images: ImageList, cells: list[Cell], settings: RunSettings, store: ResultStore,
             ctx: EvalContext, log: Callable[[str], None] = print) -> tuple[list[dict], list[tuple[str, str]]]:
    """Evaluate every unfinished cell; returns (rows written now, skipped files)."""
    ids = {c: cell_id(c, entry, images, settings, ctx) for c in cells}
    finished = store.finished_cells()
    pending = [c for c in cells if ids[c] not in finished]
    if len(pending) < len(cells):
        log(f"resume: {len(cells) - len(pending)} of {len(cells)} cells already in {store.csv}")
    if not pending:
        return [], []

    device = settings.device
    model = entry.module.to(device).eval()
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    table = imagenet_classes()
    to_global = torch.tensor([table.index_of[w] for w in entry.wnids], device=device)
    n_items = len(images.items)
    shards = [list(range(s, min(s + settings.shard_size, n_items))) for s in range(0, n_items, settings.shard_size)]
    skipped: list[tuple[str, str]] = []
    progress = None
    if settings.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=n_items * len(pending), unit="img", desc=entry.name, leave=False, smoothing=0.1)

    for k, shard in enumerate(shards):
        todo = [c for c in pending if not store.shard_done(ids[c], k)]
        if not todo:
            if progress:
                progress.update(len(shard) * len(pending))
            continue
        records = {c: [] for c in todo}
        shard_seconds = {c: 0.0 for c in todo}
        loader = make_loader(images, entry.preprocessing, settings.batch_size, settings.workers, indices=shard,
                             pin_memory=device.type == "cuda")
        for batch in loader:
            skipped.extend(batch["skipped"])
            if "images" not in batch:
                continue
            t0 = time.perf_counter()
            x = batch["images"].to(device, non_blocking=True).float().div_(255.0)
            labels = batch["labels"].to(device)
            accepted = torch.cat([labels[:, None], batch["alt_labels"].to(device)], 1)  # (B, 1 + K), -1 = none
            ids_b = batch["image_ids"]
            decode_share = (time.perf_counter() - t0) / len(todo)
            for cell in todo:
                t1 = time.perf_counter()
                xc = entry.preprocessing.normalize(corrupt_batch(cell, x, ids_b.to(device), settings.seed))
                if settings.channels_last:
                    xc = xc.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), _autocast(settings):
                    logits = model(xc)
                probs = logits.float().softmax(1)
                top5 = to_global[probs.topk(5, dim=1).indices]  # (B, 5) global class indices
                hit = (top5[:, :, None] == accepted[:, None, :]) & (accepted[:, None, :] >= 0)
                global_probs = torch.zeros(probs.shape[0], len(table), device=device).index_add_(1, to_global, probs)
                p_true = (global_probs.gather(1, accepted.clamp(min=0)) * (accepted >= 0)).sum(1)
                rec = {
                    "image_id": ids_b.numpy(), "label": batch["labels"].numpy(),
                    "pred": top5[:, 0].cpu().numpy(), "correct1": hit[:, 0].any(1).cpu().numpy(),
                    "correct5": hit.any(2).any(1).cpu().numpy(), "p_true": p_true.cpu().numpy().astype(np.float32),
                    "confidence": probs.max(1).values.cpu().numpy().astype(np.float32),
                }
                _sync(device)
                shard_seconds[cell] += time.perf_counter() - t1 + decode_share
                records[cell].append(pd.DataFrame(rec))
                if progress:
                    progress.update(len(ids_b))
            if progress:
                rate = progress.format_dict.get("rate")
                if rate:
                    progress.set_postfix_str(f"{rate / max(1, len(todo)):.0f} images/s per cell")
        if skipped:
            store.write_skipped(skipped)
        for cell in todo:
            frames = [f for f in records[cell] if len(f)]
            shard_records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
                {c: [] for c in RECORD_COLUMNS})
            # the shard's compute time rides along per image, so a resumed cell still reports its full time
            shard_records["seconds"] = shard_seconds[cell] / max(1, len(shard_records))
            store.write_shard(ids[cell], k, shard_records)
    if progress:
        progress.close()

    rows = []
    n_skipped = store.count_skipped({str(i.path) for i in images.items})
    for cell in pending:
        recs = store.load_shards(ids[cell], len(shards))
        cell_seconds = float(recs.pop("seconds").sum()) if "seconds" in recs else float("nan")
        summary = cell_summary(recs)
        row = {
            "model": entry.name, "dataset": ctx.dataset_name, "corruption": cell.name, "category": cell.category,
            "severity": cell.severity, **summary, "n_skipped": n_skipped, "seconds": round(cell_seconds, 4),
            "images_per_s": round(summary["n"] / cell_seconds, 2) if cell_seconds > 0 else float("nan"),
            "preprocessing": entry.preprocessing.describe(), "jpeg_mode": cell.jpeg_mode, "backend": ctx.backend,
            "seed": settings.seed, "config_hash": stable_hash(ctx.model_identity), "cell_id": ids[cell],
            "device": str(device), "versions": ctx.versions, "git_commit": ctx.git_commit, "weights": entry.weights,
        }
        store.finish_cell(row, recs)
        rows.append(row)
    return rows, skipped
