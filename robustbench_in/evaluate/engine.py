"""Evaluation engine: decode each batch once, then produce every cell of the suite from it on the device.

dataset -> uint8 crops (CPU workers) -> device -> for each (corruption, severity) cell:
corrupt -> [faithful JPEG | 8-bit step] -> normalise (inside the JPEG step's per-image write when there is one)
-> model -> per-image records.
The dataset is processed in shards; each finished shard is written for every cell (the last one straight into
the cell's records), so a killed run resumes at the shard where it stopped and never recomputes a finished cell.

The steps, each a function: :func:`score_batch` (one cell of one batch -> records), :func:`run_shard` (every
pending cell of one shard -> shard files), :func:`make_row` (a finished cell's records -> its result row), and
:func:`evaluate`, which strings them together with resume and progress.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from corruptions.filters import empty_batch, images_per_chunk
from corruptions.registry import apply_corruption, apply_corruption_levels
from corruptions.rng import derive_seeds
from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import ImageList
from robustbench_in.data.loader import make_loader
from robustbench_in.data.preprocessing import Preprocessing
from robustbench_in.evaluate.pipeline import (CachePlan, DecodedShard, ShardPrefetch, accepted_labels, ahead,
                                               plan_cache)
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


def corrupt_batch(cell: Cell, images: torch.Tensor, image_ids: torch.Tensor, seed: int,
                  memory_format: torch.memory_format = torch.contiguous_format,
                  preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """Float images in [0, 1], or uint8 grey levels, -> the cell's version of them as floats (same device; the JPEG
    step writes ``memory_format`` directly, sparing a channels_last model one copy). With ``preprocessing``:
    normalised for the model (by the JPEG step as it writes each image, where the cell has one). Levels stay
    levels through a corruption with an 8-bit twin (:func:`takes_levels`) and into the JPEG step; others get them
    as floats."""
    if images.dtype == torch.uint8 and not takes_levels(cell):
        images = unit_float(images)
    if cell.corruption is None:
        return images if preprocessing is None else preprocessing.normalize(images)
    seeds = derive_seeds(seed, image_ids, cell.name, cell.severity)
    # The engine's images are uint8 (/ 255), always in range: no input check (it would sync the device per cell).
    apply = (apply_corruption_levels if images.dtype == torch.uint8
             else functools.partial(apply_corruption, check_input=False))
    if cell.corruption.runs_on == "cpu" and images.device.type != "cpu":
        out = apply(cell.corruption, images.cpu(), cell.severity, seeds).to(images.device)
    else:
        out = apply(cell.corruption, images, cell.severity, seeds)
    if cell.faithful_jpeg:
        from corruptions.digital import jpeg_round_trip

        return jpeg_round_trip(out, cell.jpeg_quality, memory_format,
                               None if preprocessing is None else preprocessing.affine)
    # an 8-bit twin's levels are on the grid already: quantize would return them unchanged
    out = unit_float(out) if out.dtype == torch.uint8 else quantize(out, cell.quantize)
    return out if preprocessing is None else preprocessing.normalize(out)


def takes_levels(cell: Cell) -> bool:
    """Whether a cell runs on uint8 grey levels from end to end: its corruption has an 8-bit twin
    (``Corruption.levels_fn``, the same result), so the engine hands it the decoded uint8 images directly."""
    return cell.corruption is not None and cell.corruption.levels_fn is not None


def unit_float(levels: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels -> float32 levels / 255 (the corruptions' input). On CPU in ~2 MiB blocks of images, each
    converted and divided while it is in cache: one pass over the batch's memory instead of three (a 64-image
    batch: ~0.09 instead of ~0.25 ms per image, paid per cell with a cache, per batch when streaming). Same bits
    either way."""
    if levels.device.type != "cpu":
        return levels.float().div_(255.0)
    out = empty_batch(levels.shape, torch.float32, levels.device)
    step = images_per_chunk(out)
    for start in range(0, levels.shape[0], step):
        out[start:start + step].copy_(levels[start:start + step]).div_(255.0)
    return out


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
        self.forward = self.model
        self.batch_size = self.runtime.first_batch_size  # evaluate() probes it on CUDA (probe_batch_size)
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

    def compile(self) -> None:
        """``runtime.compile=true``: torch.compile the forward pass, compiled here on one batch of the run's size,
        so a platform where it cannot work fails before any cell (one line, naming the setting)."""
        size = self.entry.preprocessing.input_size
        compiled = torch.compile(self.model)
        probe = torch.zeros(self.batch_size, 3, size, size, device=self.runtime.torch_device)
        if self.runtime.use_channels_last:
            probe = probe.contiguous(memory_format=torch.channels_last)
        try:
            with torch.inference_mode(), self.runtime.autocast():
                compiled(probe)
        except Exception as err:  # inductor raises many types (no compiler, unsupported op, ...)
            first = str(err).strip().split("\n")[0][:200]
            raise ValueError(f"runtime.compile=true: torch.compile failed for {self.entry.name} on "
                             f"{self.runtime.torch_device} ({type(err).__name__}: {first}): use "
                             "runtime.compile=false") from None
        self.forward = compiled

    def probe_batch_size(self) -> int:
        """``runtime.batch_size=null`` on CUDA: the largest power of two up to 512 whose forward pass leaves room
        for the corruption's working copies (about 12 float copies of the batch); elsewhere the configured size."""
        device = self.runtime.torch_device
        if self.runtime.batch_size or device.type != "cuda":
            return self.runtime.first_batch_size
        size, free = self.entry.preprocessing.input_size, torch.cuda.mem_get_info(device)[0]
        for batch in (512, 256, 128):
            try:
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                with torch.inference_mode(), self.runtime.autocast():
                    self.forward(torch.zeros(batch, 3, size, size, device=device))
                peak = torch.cuda.max_memory_allocated(device) - base
                if peak + 12 * batch * 3 * size * size * 4 < 0.8 * free:
                    return batch
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
        return self.runtime.first_batch_size


def score_batch(scorer: Scorer, cell: Cell, x: torch.Tensor, image_ids: torch.Tensor,
                accepted: torch.Tensor) -> dict[str, torch.Tensor]:
    """One cell of one batch of clean images (float [0, 1] or uint8 levels, on the device): corrupt, normalise,
    classify. Returns the per-image records as tensors on the device (copied to the host once per shard, not per
    batch)."""
    runtime = scorer.runtime
    device = x.device
    with torch.inference_mode():
        fmt = torch.channels_last if runtime.use_channels_last else torch.contiguous_format
        xc = corrupt_batch(cell, x, image_ids.to(device), runtime.seed, fmt, scorer.entry.preprocessing)
        if runtime.use_channels_last:
            xc = xc.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            logits = scorer.forward(xc)
        logits = logits.float()
        if scorer.outside_subset is not None:
            logits = logits.masked_fill(scorer.outside_subset, float("-inf"))
        probs = logits.softmax(1)
        top5 = scorer.to_global[probs.topk(min(5, probs.shape[1]), dim=1).indices]  # (B, 5) global class indices
        hit = (top5[:, :, None] == accepted[:, None, :]) & (accepted[:, None, :] >= 0)
        global_probs = torch.zeros(probs.shape[0], scorer.n_classes, device=device).index_add_(1, scorer.to_global,
                                                                                              probs)
        p_true = (global_probs.gather(1, accepted.clamp(min=0)) * (accepted >= 0)).sum(1)
        return {"pred": top5[:, 0], "correct1": hit[:, 0].any(1), "correct5": hit.any(2).any(1), "p_true": p_true,
                "confidence": probs.max(1).values}


def records_frame(parts: list[dict[str, torch.Tensor]], image_ids: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Per-batch device records -> one host DataFrame (one copy per column)."""
    if not parts:
        return pd.DataFrame({c: [] for c in RECORD_COLUMNS})
    cols = {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in parts[0]}
    return pd.DataFrame({"image_id": image_ids.numpy(), "label": labels.numpy(), "pred": cols["pred"],
                         "correct1": cols["correct1"], "correct5": cols["correct5"],
                         "p_true": cols["p_true"].astype(np.float32),
                         "confidence": cols["confidence"].astype(np.float32)})


def batch_records(scorer: Scorer, cell: Cell, x: torch.Tensor, batch: dict, accepted: torch.Tensor) -> pd.DataFrame:
    """:func:`score_batch` of one loader batch as a host DataFrame (training's held-out scoring, tests)."""
    return records_frame([score_batch(scorer, cell, x, batch["image_ids"], accepted)], batch["image_ids"],
                         batch["labels"])


def score_in_pieces(scorer: Scorer, cell: Cell, x: torch.Tensor, image_ids: torch.Tensor,
                    accepted: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """:func:`score_batch` in pieces of at most ``scorer.max_batch`` images. On CUDA out-of-memory the piece size is
    halved (down to 1, with one note) and kept for the rest of the run; per-image seeds make the records the same
    at any piece size."""
    size = min(len(x), scorer.max_batch or len(x))
    while True:
        try:
            return [score_batch(scorer, cell, x[s:s + size], image_ids[s:s + size], accepted[s:s + size])
                    for s in range(0, len(x), size)]
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            failed, size = size, (size + 1) // 2
            scorer.max_batch = size
            scorer.log(f"note: out of memory at a batch of {failed} images on {x.device}: scoring in batches of "
                       f"{size} from now on (runtime.batch_size sets the first try)")


class CellTimer:
    """Compute seconds per cell without a device sync per batch: CUDA events on CUDA (read once per shard),
    the wall clock elsewhere."""

    def __init__(self, device: torch.device, cells: list[Cell]):
        self.cuda = device.type == "cuda"
        self.seconds = {c: 0.0 for c in cells}
        self.events: list[tuple[Cell, object, object]] = []

    def start(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def stop(self, cell: Cell, started) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((cell, started, end))
        else:
            self.seconds[cell] += time.perf_counter() - started

    def totals(self) -> dict[Cell, float]:
        if self.events:
            self.events[-1][2].synchronize()
            for cell, begin, end in self.events:
                self.seconds[cell] += begin.elapsed_time(end) / 1e3
            self.events = []
        return self.seconds


def _shard_frames(cells: list[Cell], parts: dict, ids: torch.Tensor, labels: torch.Tensor,
                  timer: CellTimer, wait_seconds: float) -> dict[Cell, pd.DataFrame]:
    """Each cell's records of one shard, with its compute seconds (plus an equal share of the time spent waiting
    for decoded images) spread over its images, so a resumed cell still reports its full time."""
    seconds = timer.totals()
    out = {}
    for cell in cells:
        frame = records_frame(parts[cell], ids, labels)
        frame["seconds"] = (seconds[cell] + wait_seconds / len(cells)) / max(1, len(frame))
        out[cell] = frame
    return out


def run_shard(scorer: Scorer, images: ImageList, shard: list[int], cells: list[Cell],
              on_batch: Callable[[int], None] = lambda n: None,
              decoded: DecodedShard | None = None) -> tuple[dict[Cell, pd.DataFrame], list]:
    """Every cell of one shard. Streaming (``decoded`` None): each decoded batch is scored under every cell and
    dropped. Cached: the shard was decoded once into ``decoded``; each cell runs over all of it in turn. Returns
    the cells' records and the files that could not be read."""
    if decoded is not None:
        return _run_cached(scorer, decoded, cells, on_batch), decoded.skipped
    device = scorer.runtime.torch_device
    timer, parts, wait = CellTimer(device, cells), {c: [] for c in cells}, 0.0
    ids, labels, skipped = [], [], []
    loader = make_loader(images, scorer.entry.preprocessing, scorer.batch_size, scorer.runtime.workers,
                         indices=shard, pin_memory=device.type == "cuda")
    batches = ((b["images"], b) for b in _readable(loader, skipped))
    t0 = time.perf_counter()
    for x_uint8, batch in ahead(device, batches):
        x = unit_float(x_uint8)
        accepted = accepted_labels(batch).to(device, non_blocking=True)
        wait += time.perf_counter() - t0
        for cell in cells:
            started = timer.start()
            parts[cell].extend(score_in_pieces(scorer, cell, x_uint8 if takes_levels(cell) else x, batch["image_ids"],
                                               accepted))
            timer.stop(cell, started)
            on_batch(len(x))
        ids.append(batch["image_ids"])
        labels.append(batch["labels"])
        t0 = time.perf_counter()
    empty = torch.zeros(0, dtype=torch.int64)
    return _shard_frames(cells, parts, torch.cat(ids) if ids else empty, torch.cat(labels) if labels else empty,
                         timer, wait), skipped


def _readable(loader, skipped: list) -> Iterator[dict]:
    """The loader's batches that hold at least one image; the unreadable files go to ``skipped``."""
    for batch in loader:
        skipped.extend(batch["skipped"])
        if "images" in batch:
            yield batch


def _run_cached(scorer: Scorer, decoded: DecodedShard, cells: list[Cell],
                on_batch: Callable[[int], None]) -> dict[Cell, pd.DataFrame]:
    """Cell after cell over one decoded shard: slices of the cached uint8 images (copied one slice ahead when
    the cache is on the host), each corrupted and classified on the device."""
    device = scorer.runtime.torch_device
    timer, parts, n = CellTimer(device, cells), {c: [] for c in cells}, len(decoded.images)
    step = scorer.batch_size
    for cell in cells:
        slices = ((decoded.images[s:s + step], s) for s in range(0, n, step))
        started = timer.start()
        for x_uint8, s in ahead(device, slices):
            parts[cell].extend(score_in_pieces(scorer, cell, x_uint8, decoded.image_ids[s:s + step],
                                               decoded.accepted[s:s + step]))
            on_batch(len(x_uint8))
        timer.stop(cell, started)
    return _shard_frames(cells, parts, decoded.image_ids, decoded.labels, timer, decoded.seconds)


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
    scorer = make_scorer(entry, images, runtime, log)
    n_items = len(images.items)
    shards = [list(range(s, min(s + runtime.shard_size, n_items))) for s in range(0, n_items, runtime.shard_size)]
    plan = plan_cache(runtime.cache, runtime.torch_device, len(shards[0]) if shards else 0,
                      3 * entry.preprocessing.input_size ** 2, runtime.cache_mb)
    if plan.mode != "stream" or runtime.cache != "auto":
        log(f"cache: {plan.mode} ({plan.reason})")
    bar = _progress_bar(runtime, n_items * len(pending), entry.name, len(pending))

    def on_batch(n: int) -> None:
        if bar is not None:
            bar.update(n)
            rate = bar.format_dict.get("rate")
            if rate:
                bar.set_postfix_str(f"{rate / bar.per_cell:.0f} images/s per cell")

    rows: dict[Cell, dict | None] = {}
    # counted once, when the first cell finishes: after the last shard's skipped files are written
    n_skipped = functools.cache(lambda: store.count_skipped({str(i.path) for i in images.items}))

    def finish(cell: Cell, last: pd.DataFrame | None = None) -> None:
        rows[cell] = store.finish_cell(ids[cell], len(shards), runtime.shard_size, lambda recs: make_row(
            cell, ids[cell], recs, entry, runtime, ctx, n_skipped(), images.protocol), last)

    try:
        skipped = _run_shards(scorer, images, shards, pending, ids, store, plan, on_batch, finish)
    finally:
        if bar is not None:
            bar.close()
    for cell in pending:  # cells whose last shard was done before (resume) or by another process
        if cell not in rows:
            finish(cell)
    return [rows[c] for c in pending if rows[c] is not None], skipped


def make_scorer(entry: ModelEntry, images: ImageList, runtime: Runtime, log: Callable[[str], None]) -> Scorer:
    """The model on its device, compiled if asked, with its batch size (probed on CUDA when not configured)."""
    scorer = Scorer(entry, runtime, log=log, class_subset=images.class_subset if images.protocol == "subset" else None)
    scorer.batch_size = scorer.probe_batch_size()
    if runtime.compile:  # after the probe, so it compiles for the batch size the run uses
        scorer.compile()
    if runtime.batch_size is None and runtime.torch_device.type == "cuda":
        log(f"batch size {scorer.batch_size} (the largest that fits {entry.name} on {runtime.torch_device})")
    return scorer


def _run_shards(scorer: Scorer, images: ImageList, shards: list[list[int]], pending: list[Cell],
                ids: dict[Cell, str], store: ResultStore, plan: CachePlan, on_batch: Callable[[int], None],
                finish: Callable[[Cell, pd.DataFrame], None]) -> list[tuple[str, str]]:
    """Every shard's pending cells into the store; with a cache, the next shard decodes while this one is scored.
    The last shard's records go straight into ``finish`` (the cell's records and row), not into a shard file."""
    prefetch = ShardPrefetch(images, scorer.entry.preprocessing, scorer.runtime, plan) if plan.mode != "stream" \
        else None
    skipped: list[tuple[str, str]] = []
    finished, size = store.finished_cells(), scorer.runtime.shard_size
    try:
        for k, shard in enumerate(shards):
            if k:  # another process sharing the folder may have finished some cells meanwhile
                finished = store.finished_cells()
            todo = [c for c in pending if ids[c] not in finished and not store.shard_done(ids[c], k, size)]
            if not todo:
                on_batch(len(shard) * len(pending))
                continue
            decoded = prefetch.get(k, shard) if prefetch else None
            if prefetch and k + 1 < len(shards):
                prefetch.submit(k + 1, shards[k + 1])
            shard_records, shard_skipped = run_shard(scorer, images, shard, todo, on_batch, decoded)
            skipped.extend(shard_skipped)
            if shard_skipped:
                store.write_skipped(shard_skipped)
            for cell, recs in shard_records.items():
                if k == len(shards) - 1:
                    finish(cell, recs)
                else:
                    store.write_shard(ids[cell], k, size, recs)
    finally:
        if prefetch:
            prefetch.close()
    return skipped
