"""Results that lose nothing when processes share a folder, the disk fills up, or the GPU runs out of memory."""

from __future__ import annotations

import errno
import subprocess

import pandas as pd
import pytest
import torch

from corruptions.registry import get_corruption
from robustbench_in.data import DataSpec, build_dataset
from robustbench_in.evaluate import Cell, EvalContext, ResultStore, Runtime, engine, evaluate
from robustbench_in.models import ModelSpec, create_model

from .hostile_cli import main_cmd

CTX = EvalContext(dataset_name="t", backend="test", versions="", git_commit="", model_identity={"m": 1})


def _runtime(**kw) -> Runtime:
    return Runtime(**{"device": "cpu", "batch_size": 4, "workers": 0, "shard_size": 4, "progress": False, **kw})


def _cells(*names: str) -> list[Cell]:
    return [Cell("clean", 0, "clean")] + [Cell(n, s, get_corruption(n).category, get_corruption(n))
                                         for n in names for s in (1, 3)]


@pytest.fixture(scope="module")
def tiny():
    return create_model(ModelSpec(name="tiny_cnn"))


@pytest.fixture(scope="module")
def images(sample_root):
    found = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root)))
    found.items = found.items[::50]  # 10 images: 3 shards of 4
    return found


def _stable(store: ResultStore) -> pd.DataFrame:
    cols = ["corruption", "severity", "n", "top1_err", "top5_err", "cell_id"]
    return store.rows()[cols].sort_values(["corruption", "severity"]).reset_index(drop=True)


def test_another_process_finishing_a_shared_cell_mid_run_loses_nothing(tiny, images, tmp_path, monkeypatch):
    """Process A is in its second shard when process B (another suite, sharing the clean cell) finishes and
    removes the clean cell's partial shards: A must finish its own cells and write the clean row only once."""
    reference = ResultStore(tmp_path / "ref")
    evaluate(tiny, images, _cells("contrast", "gaussian_noise"), _runtime(), reference, CTX)

    real = engine.run_shard
    calls = {"n": 0}

    def run_shard_then_let_b_finish(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] == 2:
            evaluate(tiny, images, _cells("gaussian_noise"), _runtime(), ResultStore(tmp_path / "shared"), CTX)
        return out

    monkeypatch.setattr(engine, "run_shard", run_shard_then_let_b_finish)
    rows, _ = evaluate(tiny, images, _cells("contrast"), _runtime(), ResultStore(tmp_path / "shared"), CTX)
    shared = ResultStore(tmp_path / "shared")
    assert sorted(r["corruption"] for r in rows) == ["contrast", "contrast"]  # the clean cell was B's
    assert shared.rows()["cell_id"].is_unique and len(shared.rows()) == 5
    pd.testing.assert_frame_equal(_stable(shared), _stable(reference))
    assert not any((shared.root / "partial").rglob("*.parquet"))


def test_two_processes_with_different_suites_share_one_folder(sample_root, tmp_path):
    """The issue's repro: two CLI processes at once, one suite each, one results folder; both finish and every
    cell is written once."""
    common = ["model=tiny_cnn", f"data.root={sample_root}", "data.max_images=48", "suite=imagenet_c",
              "suite.severities=[1,3,5]", "runtime=cpu", "runtime.batch_size=8", "runtime.shard_size=8",
              f"results_dir={tmp_path}"]
    procs = [subprocess.Popen(main_cmd(*common, f"suite.corruptions=[{name}]"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for name in ("contrast", "gaussian_noise")]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    rows = pd.read_csv(tmp_path / "results.csv")
    assert rows["cell_id"].is_unique and len(rows) == 1 + 2 * 3
    assert (rows["n"] == 48).all()
    assert not any((tmp_path / "partial").rglob("*.parquet"))


def test_disk_full_while_writing_a_shard_leaves_no_half_file_and_resumes(tiny, images, tmp_path, monkeypatch):
    reference = ResultStore(tmp_path / "ref")
    evaluate(tiny, images, _cells("contrast"), _runtime(), reference, CTX)

    real = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def disk_fills_up(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # a shard file of the second shard: half of it is written, then the disk is full
            with open(path, "wb") as fh:
                fh.write(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    store = ResultStore(tmp_path / "full")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_fills_up)
    with pytest.raises(OSError, match="No space left"):
        evaluate(tiny, images, _cells("contrast"), _runtime(), store, CTX)
    leftovers = [p.name for p in store.root.rglob("*") if p.is_file() and p.name != ".lock"]
    assert all(not name.startswith(".") for name in leftovers), leftovers  # no temporaries
    for shard in (store.root / "partial").rglob("*.parquet"):
        pd.read_parquet(shard)  # every shard on disk is whole
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    evaluate(tiny, images, _cells("contrast"), _runtime(), store, CTX)
    pd.testing.assert_frame_equal(_stable(store), _stable(reference))


def test_out_of_memory_retries_at_half_the_batch_down_to_one(tiny, images, tmp_path, monkeypatch):
    """CUDA OOM injected on CPU: a forward pass over more than 2 images fails; the batch of 4 is scored in halves
    with one note, and the numbers equal an unconstrained run."""
    reference = ResultStore(tmp_path / "ref")
    evaluate(tiny, images, _cells("contrast"), _runtime(), reference, CTX)

    class SmallMemory(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x)

    notes = []
    small = create_model(ModelSpec(name="tiny_cnn"))
    small.module = SmallMemory(small.module)
    store = ResultStore(tmp_path / "oom")
    evaluate(small, images, _cells("contrast"), _runtime(), store, CTX, log=notes.append)
    pd.testing.assert_frame_equal(_stable(store).drop(columns="cell_id"), _stable(reference).drop(columns="cell_id"))
    oom_notes = [n for n in notes if "out of memory" in n]
    assert len(oom_notes) == 1 and "batches of 2" in oom_notes[0], notes


def test_out_of_memory_at_batch_one_is_an_error(tiny, images, tmp_path):
    class NoMemory(torch.nn.Module):
        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    broken = create_model(ModelSpec(name="tiny_cnn"))
    broken.module = NoMemory()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        evaluate(broken, images, _cells(), _runtime(), ResultStore(tmp_path), CTX, log=lambda s: None)
