"""Evaluation engine: decode each batch once, then produce every cell of the suite from it on the device.

dataset -> uint8 crops (CPU workers) -> device -> for each (corruption, severity) cell:
corrupt -> [faithful JPEG] -> normalise -> model -> per-image records.
The dataset is processed in shards; each finished shard is written for every cell, so a killed run
resumes at the shard where it stopped and never recomputes a finished cell.

The steps, each a function: :func:`score_batch` (one cell of one batch -> records), :func:`run_shard` (every
pending cell of one shard -> shard files), :func:`make_row` (a finished cell's records -> its result row), and
:func:`evaluate`, which strings them together with resume and progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from corruptions.registry import apply_corruption
from corruptions.rng import derive_seeds
from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import ImageList
from robustbench_in.data.loader import make_loader
from robustbench_in.evaluate.results import RECORD_COLUMNS, ResultStore, cell_summary
from robustbench_in.evaluate.runtime import Runtime
from robustbench_in.evaluate.suite import Cell
from robustbench_in.files import stable_hash
from robustbench_in.models.registry import ModelEntry


@dataclass
class EvalContext:
    """Provenance copied into every result row."""

    dataset_name: str
    backend: str
    versions: str
    git_commit: str
    model_identity: dict
    extra_hash: dict = field(default_factory=dict)


def corrupt_batch(cell: Cell, images: torch.Tensor, image_ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Float images in [0, 1] -> the cell's version of them (same device)."""
    if cell.corruption is None:
        return images
    seeds = derive_seeds(seed, image_ids, cell.name, cell.severity)
    # The engine's images are uint8 / 255, always in range: no input check (it would sync the device per cell).
    if cell.corruption.runs_on == "cpu" and images.device.type != "cpu":
        out = apply_corruption(cell.corruption, images.cpu(), cell.severity, seeds, check_input=False).to(images.device)
    else:
        out = apply_corruption(cell.corruption, images, cell.severity, seeds, check_input=False)
    if cell.faithful_jpeg:
        from corruptions.digital import jpeg_round_trip

        return jpeg_round_trip(out, cell.jpeg_quality)
    return quantize(out, cell.quantize)


def quantize(images: torch.Tensor, mode: str) -> torch.Tensor:
    """The 8-bit step the ImageNet-C generator applies to every image it saves (``np.uint8(x * 255)``: truncation,
    in float64 like the reference and ``jpeg_round_trip``, counting a value within 2**-10 below a grey level as
    that level), or rounding. Returns grey levels / 255 in the input's dtype."""
    if mode == "none":
        return images
    levels = images.to(torch.float64) * 255.0
    levels = levels.add_(2.0 ** -10).floor_() if mode == "truncate" else levels.round_()
    return levels.clamp_(0.0, 255.0).div_(255.0).to(images.dtype)


def cell_id(cell: Cell, entry: ModelEntry, images: ImageList, runtime: Runtime, ctx: EvalContext) -> str:
    """Everything that determines a cell's numbers — and nothing (batch size, workers) that must not."""
    subset = stable_hash(list(images.class_subset)) if images.protocol == "subset" and images.class_subset else None
    return stable_hash({
        "model": ctx.model_identity, "preprocessing": entry.preprocessing.as_dict(),
        "dataset": [images.name, images.root, len(images.items), stable_hash([i.key for i in images.items])],
        "corruption": cell.name, "severity": cell.severity, "jpeg": cell.jpeg_mode,
        **({"quantize": cell.quantize} if cell.quantize_mode != "none" and cell.quantize == cell.quantize_mode else {}),
        **({"protocol": ["subset", subset]} if subset else {}),
        **({"border_crop": images.border_crop} if images.border_crop else {}),
        **({"source": cell.source} if cell.source != "on_the_fly" else {}),
        "params": repr(cell.corruption.params) if cell.corruption else "", "seed": runtime.seed,
        "precision": runtime.resolved_precision, "backend": ctx.backend, **ctx.extra_hash,
    })


@dataclass
class Scorer:
    """The model on its device, and the map from its outputs to the global class table."""

    entry: ModelEntry
    runtime: Runtime
    log: Callable[[str], None] = print
    max_batch: int | None = None  # set when the device ran out of memory at a larger batch
    class_subset: tuple[int, ...] | None = None  # global classes the logits are restricted to (None = all)

    def __post_init__(self) -> None:
        device = self.runtime.torch_device
        self.model = self.entry.module.to(device).eval()
        if self.runtime.use_channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.n_classes = len(imagenet_classes())
        index = imagenet_classes().index_of
        self.to_global = torch.tensor([index[w] for w in self.entry.wnids], device=device)
        self.outside_subset = None
        if self.class_subset is not None:  # -inf on the model's outputs for classes the data set does not have
            inside = torch.isin(self.to_global, torch.tensor(self.class_subset, device=device))
            if not bool(inside.any()):
                raise ValueError(f"model {self.entry.name} has none of the data set's {len(self.class_subset)} "
                                 "classes among its outputs: use data.protocol=full")
            self.outside_subset = ~inside


def score_batch(scorer: Scorer, cell: Cell, x: torch.Tensor, batch: dict, accepted: torch.Tensor) -> pd.DataFrame:
    """One cell of one decoded batch: corrupt, normalise, classify; per-image records (on the host)."""
    runtime = scorer.runtime
    device = x.device
    ids = batch["image_ids"]
    xc = scorer.entry.preprocessing.normalize(corrupt_batch(cell, x, ids.to(device), runtime.seed))
    if runtime.use_channels_last:
        xc = xc.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), runtime.autocast():
        logits = scorer.model(xc)
    logits = logits.float()
    if scorer.outside_subset is not None:
        logits = logits.masked_fill(scorer.outside_subset, float("-inf"))
    probs = logits.softmax(1)
    top5 = scorer.to_global[probs.topk(min(5, probs.shape[1]), dim=1).indices]  # (B, 5) global class indices
    hit = (top5[:, :, None] == accepted[:, None, :]) & (accepted[:, None, :] >= 0)
    global_probs = torch.zeros(probs.shape[0], scorer.n_classes, device=device).index_add_(1, scorer.to_global,
                                                                                          probs)
    p_true = (global_probs.gather(1, accepted.clamp(min=0)) * (accepted >= 0)).sum(1)
    return pd.DataFrame({
        "image_id": ids.numpy(), "label": batch["labels"].numpy(),
        "pred": top5[:, 0].cpu().numpy(), "correct1": hit[:, 0].any(1).cpu().numpy(),
        "correct5": hit.any(2).any(1).cpu().numpy(), "p_true": p_true.cpu().numpy().astype(np.float32),
        "confidence": probs.max(1).values.cpu().numpy().astype(np.float32),
    })


def score_in_pieces(scorer: Scorer, cell: Cell, x: torch.Tensor, batch: dict, accepted: torch.Tensor) -> pd.DataFrame:
    """:func:`score_batch` in pieces of at most ``scorer.max_batch`` images. On CUDA out-of-memory the piece size is
    halved (down to 1, with one note) and kept for the rest of the run; per-image seeds make the records the same
    at any piece size."""
    size = min(len(x), scorer.max_batch or len(x))
    while True:
        try:
            return pd.concat([
                score_batch(scorer, cell, x[s:s + size], {k: batch[k][s:s + size] for k in ("image_ids", "labels")},
                            accepted[s:s + size])
                for s in range(0, len(x), size)], ignore_index=True)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            failed, size = size, (size + 1) // 2
            scorer.max_batch = size
            scorer.log(f"note: out of memory at a batch of {failed} images on {x.device}: scoring in batches of "
                       f"{size} from now on (runtime.batch_size sets the first try)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_shard(scorer: Scorer, images: ImageList, shard: list[int], cells: list[Cell],
              on_batch: Callable[[int], None] = lambda n: None) -> tuple[dict[Cell, pd.DataFrame], list]:
    """Every cell of one shard: each batch decoded once, then scored under each cell. Returns the cells'
    records (with the compute seconds spread over their images, so a resumed cell still reports its full time)
    and the files that could not be read."""
    runtime = scorer.runtime
    device = runtime.torch_device
    records: dict[Cell, list[pd.DataFrame]] = {c: [] for c in cells}
    seconds = {c: 0.0 for c in cells}
    skipped: list[tuple[str, str]] = []
    loader = make_loader(images, scorer.entry.preprocessing, runtime.batch_size, runtime.workers, indices=shard,
                         pin_memory=device.type == "cuda")
    for batch in loader:
        skipped.extend(batch["skipped"])
        if "images" not in batch:
            continue
        t0 = time.perf_counter()
        x = batch["images"].to(device, non_blocking=True).float().div_(255.0)
        accepted = torch.cat([batch["labels"][:, None], batch["alt_labels"]], 1).to(device)  # (B, 1+K), -1 = none
        decode_share = (time.perf_counter() - t0) / len(cells)
        for cell in cells:
            t1 = time.perf_counter()
            records[cell].append(score_in_pieces(scorer, cell, x, batch, accepted))
            _sync(device)
            seconds[cell] += time.perf_counter() - t1 + decode_share
            on_batch(len(batch["image_ids"]))
    out = {}
    for cell in cells:
        frames = [f for f in records[cell] if len(f)]
        shard_records = (pd.concat(frames, ignore_index=True) if frames
                         else pd.DataFrame({c: [] for c in RECORD_COLUMNS}))
        shard_records["seconds"] = seconds[cell] / max(1, len(shard_records))
        out[cell] = shard_records
    return out, skipped


def make_row(cell: Cell, cell_hash: str, records: pd.DataFrame, entry: ModelEntry, runtime: Runtime,
             ctx: EvalContext, n_skipped: int, protocol: str = "full") -> dict:
    """The result row of a finished cell (its records lose their per-image ``seconds`` column)."""
    cell_seconds = float(records.pop("seconds").sum()) if "seconds" in records else float("nan")
    summary = cell_summary(records)
    return {
        "model": entry.name, "dataset": ctx.dataset_name, "corruption": cell.name, "category": cell.category,
        "severity": cell.severity, **summary, "n_skipped": n_skipped, "seconds": round(cell_seconds, 4),
        "images_per_s": round(summary["n"] / cell_seconds, 2) if cell_seconds > 0 else float("nan"),
        "preprocessing": entry.preprocessing.describe(), "jpeg_mode": cell.jpeg_mode,
        "quantize": cell.quantize_mode, "source": cell.source,
        "protocol": protocol, "backend": ctx.backend,
        "seed": runtime.seed, "cell_id": cell_hash, "device": str(runtime.torch_device), "versions": ctx.versions,
        "git_commit": ctx.git_commit, "weights": entry.weights,
    }


def _progress_bar(runtime: Runtime, total: int, name: str, per_cell: int):
    if not runtime.show_progress:
        return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="img", desc=name, leave=False, smoothing=0.1)
    bar.per_cell = max(1, per_cell)
    return bar


def evaluate(entry: ModelEntry, images: ImageList, cells: list[Cell], runtime: Runtime, store: ResultStore,
             ctx: EvalContext, log: Callable[[str], None] = print) -> tuple[list[dict], list[tuple[str, str]]]:
    """Evaluate every unfinished cell; returns (rows written now, skipped files)."""
    ids = {c: cell_id(c, entry, images, runtime, ctx) for c in cells}
    finished = store.finished_cells()
    pending = [c for c in cells if ids[c] not in finished]
    if len(pending) < len(cells):
        log(f"resume: {len(cells) - len(pending)} of {len(cells)} cells already in {store.csv}")
    if not pending:
        return [], []
    scorer = Scorer(entry, runtime, log=log,
                    class_subset=images.class_subset if images.protocol == "subset" else None)
    n_items = len(images.items)
    shards = [list(range(s, min(s + runtime.shard_size, n_items))) for s in range(0, n_items, runtime.shard_size)]
    skipped: list[tuple[str, str]] = []
    bar = _progress_bar(runtime, n_items * len(pending), entry.name, len(pending))

    def on_batch(n: int) -> None:
        if bar is not None:
            bar.update(n)
            rate = bar.format_dict.get("rate")
            if rate:
                bar.set_postfix_str(f"{rate / bar.per_cell:.0f} images/s per cell")

    for k, shard in enumerate(shards):
        if k:  # another process sharing the folder may have finished some cells meanwhile
            finished = store.finished_cells()
        todo = [c for c in pending if ids[c] not in finished and not store.shard_done(ids[c], k)]
        if not todo:
            on_batch(len(shard) * len(pending))
            continue
        shard_records, shard_skipped = run_shard(scorer, images, shard, todo, on_batch)
        skipped.extend(shard_skipped)
        if shard_skipped:
            store.write_skipped(shard_skipped)
        for cell, recs in shard_records.items():
            store.write_shard(ids[cell], k, recs)
    if bar is not None:
        bar.close()

    rows = []
    n_skipped = store.count_skipped({str(i.path) for i in images.items})
    for cell in pending:
        row = store.finish_cell(ids[cell], len(shards),
                                lambda recs, cell=cell: make_row(cell, ids[cell], recs, entry, runtime, ctx, n_skipped,
                                                                 images.protocol))
        if row is not None:
            rows.append(row)
    return rows, skipped
