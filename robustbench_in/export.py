"""Export: a suite's corrupted images written to disk as an ImageNet-C-style tree, with a manifest to verify it.

    OUT/<corruption>/<severity>/<wnid>/<file stem>.JPEG   quality-``suite.jpeg_quality`` JPEG of the corrupted crop
    OUT/manifest.json                                    what was exported: seed, suite, JPEG, preprocessing, versions
    OUT/manifest_files.csv                               path, sha256, bytes, source_key, corruption, severity

The pixels are the engine's: :func:`corrupt_batch` with the same per-image seeds, truncated to uint8 and coded
with the encoder of :func:`corruptions.digital.jpeg_round_trip`, so decoding an exported file gives exactly what
on-the-fly evaluation with ``suite.faithful_jpeg=true`` feeds the model. Workers decode, the runtime device
corrupts, a thread pool encodes and writes (atomically). A killed export resumes: finished files are kept, and
their checksums come from the per-batch parts in ``OUT/.export-parts/`` or, for files no part lists, by hashing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import torch

import corruptions
from corruptions.digital import _TRUNCATE_TOLERANCE  # the truncation jpeg_round_trip applies before its encoder
from corruptions.filters import empty_batch, images_per_chunk
from robustbench_in.data.classes import imagenet_classes
from robustbench_in.data.datasets import ImageList
from robustbench_in.data.loader import make_loader
from robustbench_in.data.preprocessing import Preprocessing
from robustbench_in.evaluate.engine import corrupt_batch
from robustbench_in.evaluate.runtime import Runtime
from robustbench_in.evaluate.suite import Cell, SuiteSpec, build_cells
from robustbench_in.files import atomic_write, stable_hash

FORMAT = "robustbench_in-export/1"
MANIFEST = "manifest.json"
FILES_CSV = "manifest_files.csv"
PARTS_DIR = ".export-parts"
FILE_COLUMNS = ("path", "sha256", "bytes", "source_key", "corruption", "severity")
#: the keys of the manifest that say which export a folder holds (a resume must match all of them)
IDENTITY_KEYS = ("format", "seed", "jpeg_quality", "corruptions", "severities", "preprocessing", "images", "backend")


class ExportError(ValueError):
    """Bad export input (a foreign manifest, clashing file names, an incomplete tree): one line through the CLI."""


# ------------------------------------------------------------------------------------------- what is exported


def export_cells(suite: SuiteSpec) -> list[Cell]:
    """The suite's corrupted cells, without the clean cell (ImageNet-C trees have none), the JPEG round trip (the
    file's own JPEG is that step) or the 8-bit step (:func:`to_levels` truncates in float64, as the round trip)."""
    cells = [replace(c, faithful_jpeg=False, quantize="none") for c in build_cells(suite) if c.corruption is not None]
    if not cells:
        raise ExportError(f"suite {suite.name} has no corruptions to export: choose a suite with corruptions "
                          "(e.g. suite=imagenet_c) or set suite.corruptions=[...]")
    return cells


def cell_dir(cell: Cell) -> str:
    return f"{cell.name}/{cell.severity}"


def image_paths(images: ImageList) -> list[str]:
    """``<wnid>/<stem>.JPEG`` of every image (the released layout); unlabelled images and clashing names refused."""
    wnids = imagenet_classes().wnids
    out, seen = [], {}
    for item in images.items:
        if not 0 <= item.label < len(wnids):
            raise ExportError(f"{item.path} has no ImageNet label: an export needs labelled images (the tree is "
                              "<corruption>/<severity>/<wnid>/...)")
        rel = f"{wnids[item.label]}/{Path(item.key).stem}.JPEG"
        if rel in seen:
            raise ExportError(f"{item.key} and {seen[rel]} would both be written as {rel}: rename one of them")
        seen[rel] = item.key
        out.append(rel)
    return out


def corruption_record(cell: Cell) -> dict:
    """What makes a corruption's pixels: its name, the function behind it and its parameters."""
    c = cell.corruption
    fn = getattr(c.fn, "__qualname__", type(c.fn).__name__)
    return {"name": c.name, "category": c.category, "random": bool(c.random),
            "fn": f"{getattr(c.fn, '__module__', '?')}.{fn}", "params": repr(c.params)}


def export_header(images: ImageList, suite: SuiteSpec, cells: list[Cell], preprocessing: Preprocessing,
                  seed: int) -> dict:
    """The manifest before any file is written; its identity keys decide whether a folder may be resumed."""
    records = {c.name: corruption_record(c) for c in cells}
    header = {
        "format": FORMAT, "seed": int(seed), "jpeg_quality": int(suite.jpeg_quality),
        "corruptions": list(records.values()), "severities": list(suite.severities),
        "preprocessing": preprocessing.as_dict(),
        "images": {"count": len(images.items), "keys_sha256": stable_hash([i.key for i in images.items], 64)},
        "backend": f"robustbench_in.corruptions-{corruptions.__version__}",
    }
    from robustbench_in.provenance import git_commit, software_versions

    return {**header, "export_id": stable_hash(header), "status": "in_progress", "suite": suite.name,
            "layout": "<corruption>/<severity>/<wnid>/<file stem>.JPEG",
            "jpeg": "torchvision.io.encode_jpeg (libjpeg, baseline 4:2:0, as PIL saves) of floor(x*255 + 2**-10) "
                    "clipped to 0-255, as corruptions.digital.jpeg_round_trip",
            "preprocessing_text": preprocessing.describe(), "data": {"name": images.name, "root": images.root},
            "versions": software_versions(), "git_commit": git_commit(), "files_csv": FILES_CSV}


# ------------------------------------------------------------------------------------------ the output folder


def read_manifest(out_dir: Path) -> dict | None:
    path = out_dir / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"{path} is not a readable export manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ExportError(f"{path} is not a {FORMAT} manifest: choose another export.out_dir")
    return data


def _differences(old: dict, new: dict) -> str:
    keys = [k for k in IDENTITY_KEYS if old.get(k) != new.get(k)]
    shown = {"seed": "seed", "jpeg_quality": "JPEG quality", "corruptions": "corruptions", "severities": "severities",
             "preprocessing": "preprocessing", "images": "images", "backend": "corruption library"}
    return ", ".join(f"{shown.get(k, k)} {old.get(k)!r:.40} vs {new.get(k)!r:.40}" if k in ("seed", "jpeg_quality")
                     else shown.get(k, k) for k in keys) or "another export"


def remove_export(out_dir: Path, manifest: dict) -> None:
    """Delete the files of the export a manifest describes (its JPEGs, parts and manifests), nothing else."""
    for c in manifest.get("corruptions", []):
        for s in manifest.get("severities", []):
            root = out_dir / str(c["name"]) / str(s)
            for f in sorted(root.glob("*/*.JPEG")) + sorted(root.glob("*/.*.tmp")):
                f.unlink()
            for d in sorted(root.glob("*"), reverse=True) + [root, root.parent]:
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    for f in sorted((out_dir / PARTS_DIR).glob("*")) + [out_dir / FILES_CSV, out_dir / MANIFEST]:
        f.unlink(missing_ok=True)
    if (out_dir / PARTS_DIR).is_dir():
        (out_dir / PARTS_DIR).rmdir()


def prepare_out_dir(out_dir: Path, header: dict, overwrite: bool) -> bool:
    """Check what ``out_dir`` holds before any work; True when it holds this export, to be resumed."""
    try:
        old = read_manifest(out_dir)
    except ExportError:
        if not overwrite:
            raise
        old = {}
    if old is not None and old.get("export_id") == header["export_id"]:
        return True
    if old is None:
        if any(not p.name.startswith(".") for p in out_dir.iterdir()) and not overwrite:
            raise ExportError(f"export.out_dir={out_dir} holds files but no {MANIFEST}: choose an empty folder, or "
                              "export.overwrite=true to write into it")
        return False
    if not overwrite:
        raise ExportError(f"export.out_dir={out_dir} holds another export ({_differences(old, header)} differ): "
                          "choose another folder, or export.overwrite=true to replace it")
    remove_export(out_dir, old)
    return False


def existing_files(out_dir: Path, dirs: list[str], remove_temporary: bool = True) -> set[str]:
    """Finished files under the cell folders ``dirs`` (paths relative to ``out_dir``); a killed run's temporary
    files (atomic_write's hidden siblings) are removed unless ``remove_temporary`` is false."""
    found = set()
    for rel in dirs:
        root = out_dir / rel
        if not root.is_dir():
            continue
        for wnid in os.scandir(root):
            if not wnid.is_dir():
                continue
            for f in os.scandir(wnid.path):
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    if remove_temporary:
                        os.unlink(f.path)
                elif f.name.endswith(".JPEG") and not f.name.startswith("."):
                    found.add(f"{rel}/{wnid.name}/{f.name}")
    return found


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8"))


def _write_csv(path: Path, rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FILE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return data


def _read_csv(path: Path) -> dict[str, dict]:
    """path -> row of a files CSV (a missing file reads as empty)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


# ------------------------------------------------------------------------------------------------ the hot path


def to_levels(images: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] (N, 3, H, W) -> uint8 (N, H, W, 3) on the CPU, truncated exactly as ``jpeg_round_trip`` does
    before its encoder (HWC: libjpeg's interleaved layout, so the encoder's own CHW -> HWC copy is a no-op).
    In ~2 MiB blocks on the CPU: the float64 temporaries stay in cache."""
    levels = empty_batch((images.shape[0], *images.shape[2:], 3), torch.uint8, images.device)
    chunk = images_per_chunk(images, bytes_per_value=8)
    for s in range(0, images.shape[0], chunk):
        block = (images[s:s + chunk].to(torch.float64) * 255.0).add_(_TRUNCATE_TOLERANCE).floor_().clamp_(0.0, 255.0)
        levels[s:s + chunk] = block.permute(0, 2, 3, 1)
    return levels.cpu()


def encode_jpeg_bytes(levels_hwc: torch.Tensor, quality: int) -> bytes:
    """The encoder of ``jpeg_round_trip`` (torchvision's libjpeg, as PIL saves): decoding gives what it feeds on."""
    from torchvision.io import encode_jpeg

    return encode_jpeg(levels_hwc.permute(2, 0, 1), quality=int(quality)).numpy().tobytes()


def _write_file(path: Path, data: bytes) -> None:
    """One file, atomically: a killed export never leaves half a file (tests replace this to simulate a kill)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def encode_and_write(levels_hwc: torch.Tensor, out_dir: Path, rel: str, quality: int, key: str, cell: Cell) -> dict:
    """One file's whole job on a pool thread; its checksum row comes from the bytes in memory (no re-read)."""
    data = encode_jpeg_bytes(levels_hwc, quality)
    _write_file(out_dir / rel, data)
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "source_key": key,
            "corruption": cell.name, "severity": cell.severity}


@dataclass
class Writer:
    """Encodes and writes files on a thread pool (at most ``limit`` in flight); after each batch the rows of the
    finished files go to a new part file, so a killed export keeps the checksums of what it wrote."""

    pool: ThreadPoolExecutor
    out_dir: Path
    quality: int
    limit: int
    on_done: Callable[[int], None] = lambda n: None
    pending: set = field(default_factory=set)
    rows: list = field(default_factory=list)

    def submit(self, levels_hwc: torch.Tensor, rel: str, key: str, cell: Cell) -> None:
        self.pending.add(self.pool.submit(encode_and_write, levels_hwc, self.out_dir, rel, self.quality, key, cell))
        while len(self.pending) > self.limit:
            self.collect(FIRST_COMPLETED)

    def collect(self, until: str = FIRST_COMPLETED) -> None:
        done, self.pending = wait(self.pending, return_when=until) if self.pending else (set(), set())
        self.take(done)

    def take(self, done: set[Future]) -> None:
        self.rows.extend(f.result() for f in done)  # a worker's error is raised here
        self.on_done(len(done))

    def flush(self) -> None:
        done = {f for f in self.pending if f.done()}
        self.pending -= done
        self.take(done)
        if self.rows:
            name = f"part-{time.time_ns():020d}-{os.getpid()}.csv"  # in writing order, across runs
            _write_csv(self.out_dir / PARTS_DIR / name, sorted(self.rows, key=lambda r: r["path"]))
            self.rows = []


def export_batch(writer: Writer, batch: dict, cells: list[Cell], paths: list[str], todo: dict[Cell, set[int]],
                 images: ImageList, runtime: Runtime) -> None:
    """Every pending file of one decoded batch: each cell corrupts the images it still lacks, in one call."""
    device = runtime.torch_device
    x = batch["images"].to(device, non_blocking=True).float().div_(255.0)
    index = batch["index"].tolist()
    for cell in cells:
        want = [j for j, i in enumerate(index) if i in todo[cell]]
        if not want:
            continue
        if len(want) == len(index):
            xs, ids = x, batch["image_ids"]
        else:
            xs, ids = x[torch.tensor(want, device=device)], batch["image_ids"][torch.tensor(want)]
        levels = to_levels(corrupt_batch(cell, xs, ids.to(device), runtime.seed))
        for k, j in enumerate(want):
            i = index[j]
            writer.submit(levels[k], f"{cell_dir(cell)}/{paths[i]}", images.items[i].key, cell)


def write_images(images: ImageList, cells: list[Cell], paths: list[str], todo: dict[Cell, set[int]],
                 preprocessing: Preprocessing, out_dir: Path, runtime: Runtime, quality: int, threads: int,
                 on_done: Callable[[int], None]) -> list[tuple[str, str]]:
    """Decode (DataLoader workers), corrupt (runtime device), encode and write (threads) every pending file;
    returns the images that could not be read."""
    device = runtime.torch_device
    indices = sorted(set().union(*todo.values()))
    loader = make_loader(images, preprocessing, runtime.first_batch_size, runtime.workers, indices=indices,
                         pin_memory=device.type == "cuda")
    (out_dir / PARTS_DIR).mkdir(exist_ok=True)
    skipped: list[tuple[str, str]] = []
    pool = ThreadPoolExecutor(threads, thread_name_prefix="export")
    writer = Writer(pool, out_dir, quality, limit=max(4 * threads, 2 * runtime.first_batch_size), on_done=on_done)
    try:
        for batch in loader:
            skipped.extend(batch["skipped"])
            if "images" in batch:
                export_batch(writer, batch, cells, paths, todo, images, runtime)
            writer.flush()
        writer.collect(ALL_COMPLETED)
        writer.flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return skipped


# -------------------------------------------------------------------------------------- checksums, manifest


def hash_file(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def file_rows(out_dir: Path, cells: list[Cell], paths: list[str], images: ImageList, skipped: set[str],
              threads: int) -> list[dict]:
    """One row per exported file, sorted by path: from the previous files CSV and the parts, the rest hashed
    (files a killed run wrote after its last part)."""
    recorded = _read_csv(out_dir / FILES_CSV)
    for part in sorted((out_dir / PARTS_DIR).glob("part-*.csv")):
        recorded.update(_read_csv(part))
    rows, unrecorded = [], []
    for cell in cells:
        for i, item in enumerate(images.items):
            if str(item.path) in skipped:
                continue
            rel = f"{cell_dir(cell)}/{paths[i]}"
            row = {"path": rel, "sha256": "", "bytes": 0, "source_key": item.key, "corruption": cell.name,
                   "severity": cell.severity}
            old = recorded.get(rel)
            if old:
                row.update(sha256=old["sha256"], bytes=int(old["bytes"]))
            else:
                unrecorded.append(row)
            rows.append(row)
    with ThreadPoolExecutor(threads) as pool:
        for row, (digest, size) in zip(unrecorded, pool.map(lambda r: hash_file(out_dir / r["path"]), unrecorded)):
            row.update(sha256=digest, bytes=size)
    return sorted(rows, key=lambda r: r["path"])


def default_threads() -> int:
    """Encoding is CPU work, the fsync of each atomic write waits on the disk: a few more threads than cores."""
    return max(4, os.cpu_count() or 1)


def _progress(runtime: Runtime, total: int, name: str):
    if not runtime.show_progress or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc=f"export {name}", smoothing=0.1)


def export_suite(images: ImageList, suite: SuiteSpec, preprocessing: Preprocessing, out_dir: Path | str, *,
                 runtime: Optional[Runtime] = None, overwrite: bool = False, threads: Optional[int] = None,
                 log: Callable[[str], None] = print) -> dict:
    """Write every corrupted cell of ``suite`` for ``images`` (cropped with ``preprocessing``) under ``out_dir``
    as ``<corruption>/<severity>/<wnid>/<stem>.JPEG``; resumes a killed export of the same inputs. ``runtime``
    gives the seed, device, batch size, workers and progress bar. Returns the manifest (also in manifest.json)."""
    runtime = runtime or Runtime()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = threads or default_threads()
    cells = export_cells(suite)
    paths = image_paths(images)
    header = export_header(images, suite, cells, preprocessing, runtime.seed)
    resume = prepare_out_dir(out_dir, header, overwrite)
    done = existing_files(out_dir, [cell_dir(c) for c in cells]) if resume else set()
    todo = {c: {i for i, p in enumerate(paths) if f"{cell_dir(c)}/{p}" not in done} for c in cells}
    n_todo, total = sum(map(len, todo.values())), len(paths) * len(cells)
    log(f"export {suite.name}: {len(cells)} cells x {len(paths)} images = {total} files into {out_dir}"
        + (f" (resume: {total - n_todo} already written)" if resume and n_todo < total else ""))
    _write_json(out_dir / MANIFEST, header)
    bar = _progress(runtime, n_todo, suite.name)
    skipped = write_images(images, cells, paths, todo, preprocessing, out_dir, runtime, int(suite.jpeg_quality),
                           threads, bar.update if bar else lambda n: None) if n_todo else []
    if bar is not None:
        bar.close()
    rows = file_rows(out_dir, cells, paths, images, {p for p, _ in skipped}, threads)
    csv_bytes = _write_csv(out_dir / FILES_CSV, rows)
    manifest = {**header, "status": "complete", "n_files": len(rows), "files_sha256": hashlib.sha256(csv_bytes)
                .hexdigest(), "skipped": sorted([list(s) for s in skipped])}
    _write_json(out_dir / MANIFEST, manifest)
    remove_parts(out_dir)
    return manifest


def remove_parts(out_dir: Path) -> None:
    parts = out_dir / PARTS_DIR
    if parts.is_dir():
        for f in parts.iterdir():
            f.unlink()
        parts.rmdir()


# ------------------------------------------------------------------------------------------------------ verify


@dataclass
class VerifyReport:
    """What re-hashing an export found: files that differ from the manifest, are missing, or are not in it."""

    out_dir: Path
    checked: int
    mismatched: list[str]
    missing: list[str]
    extra: list[str]

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.extra)

    def summary(self) -> str:
        if self.ok:
            return f"verified {self.checked} files of {self.out_dir}: all match {MANIFEST}"
        parts = [f"{len(v)} {k} (first: {v[0]})" for k, v in (("differ", self.mismatched),
                                                              ("missing", self.missing),
                                                              ("not in the manifest", self.extra)) if v]
        return f"{self.out_dir}: of {self.checked} files, " + "; ".join(parts)


def verify_export(out_dir: Path | str, threads: Optional[int] = None) -> VerifyReport:
    """Re-hash every file of a finished export against its manifest (the files CSV is checked by its own hash)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise ExportError(f"{out_dir} holds no {MANIFEST}: not an export (task=export writes one)")
    if manifest.get("status") != "complete":
        raise ExportError(f"{out_dir} holds an unfinished export: run the same export command again to finish it")
    csv_path = out_dir / FILES_CSV
    if not csv_path.is_file():
        raise ExportError(f"{csv_path} is missing: the checksums of {out_dir} are gone")
    mismatched = [] if hash_file(csv_path)[0] == manifest.get("files_sha256") else [FILES_CSV]
    rows = list(_read_csv(csv_path).values())
    present = [r for r in rows if (out_dir / r["path"]).is_file()]
    missing = sorted(r["path"] for r in rows if not (out_dir / r["path"]).is_file())
    with ThreadPoolExecutor(threads or default_threads()) as pool:
        digests = pool.map(lambda r: hash_file(out_dir / r["path"])[0], present)
        mismatched += sorted(r["path"] for r, d in zip(present, digests) if d != r["sha256"])
    dirs = [f"{c['name']}/{s}" for c in manifest.get("corruptions", []) for s in manifest.get("severities", [])]
    extra = sorted(existing_files(out_dir, dirs, remove_temporary=False) - {r["path"] for r in rows})
    return VerifyReport(out_dir, len(rows), mismatched, missing, extra)
