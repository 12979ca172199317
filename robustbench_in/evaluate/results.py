"""Results that lose nothing: per-shard partial records, atomic per-cell records and rows, resume.

Layout of a results dir::

    results.csv                 one row per finished (model, dataset, corruption, severity) cell
    records/<cell_id>.parquet   per-image records of a finished cell (image_id, label, pred, correct1,
                                correct5, p_true, confidence): every metric can be recomputed from disk
    partial/<cell_id>/<size>x<k>.parquet  records of finished shards of unfinished cells (removed when done; a
                                cell's last shard goes straight into its records)
    skipped.csv                 images that could not be read, with the reason

Every file is written to a temporary name and renamed into place, so a SIGKILL loses at most the shard in flight.
Several processes may share one folder: finishing a cell (reading its shards, writing its records and row,
removing its shards) happens under an exclusive file lock, after checking that no other process finished it
first, so nobody deletes shards that someone else is about to read and every cell is written once. A cell id
hashes everything that determines the cell's numbers, so re-running the same command finds its finished cells
and shards and skips them.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from robustbench_in.files import atomic_write
from robustbench_in.report.metrics import cell_metrics

RESULT_COLUMNS = [
    "model", "dataset", "corruption", "category", "severity", "n", "n_skipped", "top1_err", "top5_err",
    "top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high", "ece", "nll", "seconds", "images_per_s",
    "preprocessing", "jpeg_mode", "quantize", "source", "protocol", "backend", "seed", "cell_id", "records", "device",
    "versions", "git_commit", "weights",
]
RECORD_COLUMNS = ["image_id", "label", "pred", "correct1", "correct5", "p_true", "confidence"]


@dataclass(frozen=True)
class _CsvState:
    """results.csv as this store last read or wrote it: the file's identity (inode, size, mtime), its text, header
    and finished cell ids."""

    signature: tuple[int, int, int] | None
    text: str
    header: tuple[str, ...]
    ids: frozenset[str]


class ResultStore:
    """One results folder: what is finished, and atomic writes of shards, cells and rows."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.csv = self.root / "results.csv"
        self._lock_depth = 0
        self._state: _CsvState | None = None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The folder's exclusive lock across processes; re-entrant within this store (flock on a second open
        file of the same process would wait for itself)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def rows(self) -> pd.DataFrame:
        if not self.csv.is_file() or self.csv.stat().st_size == 0:
            return pd.DataFrame(columns=RESULT_COLUMNS)
        return pd.read_csv(self.csv)

    def finished_cells(self) -> set[str]:
        """The finished cells' ids, from results.csv."""
        return set(self._csv_state().ids)

    def _csv_state(self) -> _CsvState:
        """results.csv's text, header and cell ids; read again only when the file is not the one this store last
        saw. Why: every finished cell reads and rewrites the file (every write is a rename to a fresh inode, and the
        file only grows), and pandas took ~20 ms a cell for it, 8% of a 64-image ImageNet-C run's overhead."""
        signature = self._csv_signature()
        if signature is None:
            return _CsvState(None, "", (), frozenset())
        if self._state is None or self._state.signature != signature:
            try:
                text = self.csv.read_text(encoding="utf-8")
                table = list(csv.reader(io.StringIO(text)))
            except (UnicodeDecodeError, csv.Error):
                table = [[]]
            header = tuple(table[0]) if table else ()
            if table and "cell_id" not in header:
                raise ValueError(f"{self.csv} is not a results table (no UTF-8 header with a cell_id column): move "
                                 "it away or set another results_dir")
            column = header.index("cell_id") if header else 0
            ids = frozenset(r[column] for r in table[1:] if len(r) > column)
            self._state = _CsvState(signature, text, header, ids)
        return self._state

    def _csv_signature(self) -> tuple[int, int, int] | None:
        """results.csv's (inode, size, mtime), or None when there is none."""
        try:
            st = os.stat(self.csv)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    # --- shards of unfinished cells
    def _shard_path(self, cell_id: str, shard: int, size: int) -> Path:
        """Shard ``shard`` of ``size`` images: the size is in the name, so a run resumed (or a second process
        started) with another runtime.shard_size never takes a shard of other images for its own."""
        return self.root / "partial" / cell_id / f"{size}x{shard:06d}.parquet"

    def shard_done(self, cell_id: str, shard: int, size: int) -> bool:
        return self._shard_path(cell_id, shard, size).is_file()

    def write_shard(self, cell_id: str, shard: int, size: int, records: pd.DataFrame) -> None:
        atomic_write(self._shard_path(cell_id, shard, size), lambda tmp: records.to_parquet(tmp, index=False))

    def load_shards(self, cell_id: str, n_shards: int, size: int,
                    last: pd.DataFrame | None = None) -> pd.DataFrame:
        """The cell's records: its shard files, the last one (``last``) from memory when given."""
        frames = [pd.read_parquet(self._shard_path(cell_id, k, size)) for k in range(n_shards - (last is not None))]
        frames = [f for f in [*frames, *([] if last is None else [last])] if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_COLUMNS)

    # --- finished cells
    def finish_cell(self, cell_id: str, n_shards: int, size: int, make_row: Callable[[pd.DataFrame], dict],
                    last: pd.DataFrame | None = None) -> dict | None:
        """Under the lock: unless another process finished the cell first, read its shards, write its records
        and then its row (``make_row(records)``); drop its partial shards either way. ``last``: the records of
        the cell's last shard, just computed and never written as a shard file (finishing right away writes
        them once instead of three times). Returns the row written, or None when the cell was already finished."""
        with self.lock():
            if cell_id not in self._csv_state().ids:
                records = self.load_shards(cell_id, n_shards, size, last)
                row = make_row(records)
                rel = f"records/{cell_id}.parquet"
                atomic_write(self.root / rel, lambda tmp: records.to_parquet(tmp, index=False))
                self.append_rows([{**row, "records": rel}])
            else:
                row = None
            if (self.root / "partial" / cell_id).exists():
                shutil.rmtree(self.root / "partial" / cell_id, ignore_errors=True)
        return row

    def append_rows(self, rows: list[dict]) -> None:
        """Add rows to results.csv (a cell already there keeps its first row). When the file's header has every
        column the rows bring, their lines are appended to its text as pandas would write them; otherwise the
        whole file is rewritten through pandas with the new columns. Atomic either way."""
        with self.lock():
            state = self._csv_state()
            new, seen = [], set(state.ids)
            for row in rows:
                cell = _csv_value(row.get("cell_id"))  # the id as the file holds it
                if cell not in seen:
                    seen.add(cell)
                    new.append(row)
            if not new:
                return
            if state.header and all(key in state.header for row in new for key in row):
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\n")
                writer.writerows([[_csv_value(row.get(key)) for key in state.header] for row in new])
                text = state.text + ("" if state.text.endswith("\n") else "\n") + buffer.getvalue()
                atomic_write(self.csv, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
                # what was just written, under the lock: no need to read it back
                self._state = _CsvState(self._csv_signature(), text, state.header, frozenset(seen))
                return
            existing = self.rows()
            combined = pd.concat([existing, pd.DataFrame(new)], ignore_index=True) if len(existing) \
                else pd.DataFrame(new)
            cols = [c for c in RESULT_COLUMNS if c in combined.columns]
            cols += [c for c in combined.columns if c not in cols]
            atomic_write(self.csv, lambda tmp: combined[cols].to_csv(tmp, index=False))
            self._csv_state()  # the new header and ids, as pandas wrote them

    def count_skipped(self, paths: set[str]) -> int:
        path = self.root / "skipped.csv"
        if not path.is_file():
            return 0
        return int(pd.read_csv(path)["path"].astype(str).isin(paths).sum())

    def write_skipped(self, skipped: list[tuple[str, str]]) -> Path:
        path = self.root / "skipped.csv"
        frame = pd.DataFrame(sorted(set(skipped)), columns=["path", "reason"])
        with self.lock():
            if path.is_file():
                frame = pd.concat([pd.read_csv(path), frame]).drop_duplicates()
            atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        return path


def _csv_value(value) -> str:
    """One value as ``DataFrame.to_csv`` writes it: missing (None, NaN) empty, numbers in their shortest repr."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    return str(value)


def cell_summary(records: pd.DataFrame) -> dict[str, float]:
    """Errors, 95% Wilson intervals, ECE and NLL of one cell, from its per-image records (the same function
    ``task=report`` uses when it recomputes from disk)."""
    return cell_metrics(records["correct1"].to_numpy(), records["correct5"].to_numpy(),
                        records["p_true"].to_numpy(np.float64), records["confidence"].to_numpy(np.float64))
