"""Engine: real accuracy on the shared samples, results independent of batch size, resume after a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from corruptions.registry import Corruption
from corruptions.rng import normal
from robustbench_in.data import DataSpec, build_dataset
from robustbench_in.evaluate import Cell, EvalContext, ResultStore, Runtime, engine, evaluate
from robustbench_in.evaluate.suite import CLEAN_CELL, SuiteSpec
from robustbench_in.models import ModelSpec, create_model


def _noise(images, severity, seeds):
    """Seeded additive noise: a stand-in random corruption for engine tests."""
    return images + 0.1 * severity * normal(seeds, tuple(images.shape[1:])).to(images)


NOISE = Corruption("test_noise", _noise, category="noise")
CTX = EvalContext(dataset_name="t", backend="test", versions="", git_commit="", model_identity={"m": 1})


def _settings(**kw) -> Runtime:
    base = dict(device="cpu", batch_size=4, workers=0, shard_size=8, progress=False)
    return Runtime(**{**base, **kw})


def _cells():
    return [Cell("clean", 0, "clean"), Cell("test_noise", 1, "noise", NOISE), Cell("test_noise", 3, "noise", NOISE)]


@pytest.fixture(scope="module")
def tiny():
    return create_model(ModelSpec(name="tiny_cnn"))


@pytest.fixture(scope="module")
def samples(sample_root):
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root)))
    images.items = images.items[::25]  # 20 images
    return images


def _records(store: ResultStore) -> pd.DataFrame:
    rows = store.rows().sort_values(["corruption", "severity"])
    frames = [pd.read_parquet(store.root / r).assign(cell=f"{c}{s}")
              for r, c, s in zip(rows["records"], rows["corruption"], rows["severity"])]
    return pd.concat(frames).sort_values(["cell", "image_id"]).reset_index(drop=True)


def test_lite0_clean_error_on_shared_samples(sample_root, tmp_path):
    """Every 5th of the 500 samples (100 images): ~11% top-1 error with the right normalisation, ~24% without."""
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root)))
    images.items = images.items[::5]
    entry = create_model(ModelSpec(name="efficientnet_lite0"))
    rows, skipped = evaluate(entry, images, [Cell("clean", 0, "clean")], _settings(batch_size=50, shard_size=100),
                             ResultStore(tmp_path), CTX)
    assert not skipped and rows[0]["n"] == 100
    assert rows[0]["top1_err"] <= 0.18 and rows[0]["top5_err"] <= 0.08


def test_results_do_not_depend_on_batch_size(tiny, samples, tmp_path):
    a = ResultStore(tmp_path / "a")
    b = ResultStore(tmp_path / "b")
    evaluate(tiny, samples, _cells(), _settings(batch_size=3, shard_size=5), a, CTX)
    evaluate(tiny, samples, _cells(), _settings(batch_size=7, shard_size=20), b, CTX)
    ra, rb = _records(a), _records(b)
    assert len(ra) == 3 * len(samples.items)
    pd.testing.assert_frame_equal(ra.drop(columns=["p_true", "confidence"]), rb.drop(columns=["p_true", "confidence"]))
    assert (ra["p_true"] - rb["p_true"]).abs().max() < 1e-4
    noisy = ra[ra["cell"] == "test_noise3"]["confidence"].to_numpy()
    clean = ra[ra["cell"] == "clean0"]["confidence"].to_numpy()
    assert not (noisy == clean).all()  # the corruption reached the model


def test_a_cells_last_shard_goes_straight_into_its_records(tiny, samples, tmp_path, monkeypatch):
    """20 images in shards of 8: shards 0 and 1 are written as shard files, shard 2 only into the cell's records
    (one write, not three); nothing is left in partial/ and every image is in the records."""
    written = []
    real = ResultStore.write_shard
    monkeypatch.setattr(ResultStore, "write_shard",
                        lambda self, cell, k, size, recs: written.append(k) or real(self, cell, k, size, recs))
    store = ResultStore(tmp_path / "r")
    rows, _ = evaluate(tiny, samples, _cells(), _settings(), store, CTX)
    assert sorted(written) == [0, 0, 0, 1, 1, 1] and len(rows) == 3
    assert not any((tmp_path / "r" / "partial").glob("*/*"))
    assert len(_records(store)) == 3 * len(samples.items) == 60


def test_crash_mid_run_then_resume_gives_the_same_rows(tiny, samples, tmp_path, monkeypatch):
    reference = ResultStore(tmp_path / "ref")
    evaluate(tiny, samples, _cells(), _settings(), reference, CTX)

    store = ResultStore(tmp_path / "crash")
    real = engine.corrupt_batch
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 14:  # inside the second shard
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "corrupt_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny, samples, _cells(), _settings(), store, CTX)
    assert not store.csv.exists() and any((store.root / "partial").rglob("*.parquet"))
    monkeypatch.setattr(engine, "corrupt_batch", real)
    rows, _ = evaluate(tiny, samples, _cells(), _settings(), store, CTX)
    assert len(rows) == 3
    pd.testing.assert_frame_equal(_records(store), _records(reference))
    cols = ["corruption", "severity", "n", "top1_err", "top5_err", "cell_id"]
    pd.testing.assert_frame_equal(store.rows()[cols], reference.rows()[cols])
    again, _ = evaluate(tiny, samples, _cells(), _settings(), store, CTX)
    assert again == []  # everything finished: nothing recomputed


def test_faithful_jpeg_is_applied_and_recorded(tiny, samples, tmp_path):
    plain = [Cell("test_noise", 2, "noise", NOISE)]
    faithful = [Cell("test_noise", 2, "noise", NOISE, faithful_jpeg=True, jpeg_quality=85)]
    a, b = ResultStore(tmp_path / "plain"), ResultStore(tmp_path / "jpeg")
    evaluate(tiny, samples, plain, _settings(), a, CTX)
    evaluate(tiny, samples, faithful, _settings(), b, CTX)
    assert a.rows()["jpeg_mode"].tolist() == ["none"] and b.rows()["jpeg_mode"].tolist() == ["faithful_q85"]
    assert a.rows()["cell_id"].iloc[0] != b.rows()["cell_id"].iloc[0]
    assert not np.allclose(_records(a)["confidence"], _records(b)["confidence"])


def test_corrupt_batch_jpeg_round_trip_quantises(samples):
    x = torch.rand(2, 3, 32, 32)
    out = engine.corrupt_batch(Cell("test_noise", 1, "noise", NOISE, faithful_jpeg=True), x, torch.tensor([1, 2]), 0)
    levels = out * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # JPEG-decoded uint8 levels


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("jpeg", [True, False])
def test_corrupt_batch_normalises_for_the_model_exactly_as_normalize_after_it(fmt, jpeg):
    """The model input comes normalised (fused into the JPEG step's per-image write where there is one): the same
    bits as normalize() after the plain step, in the requested layout; the clean cell's input is untouched."""
    from robustbench_in.data.preprocessing import STANDARD

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([1, 2, 3])
    for cell in (Cell("test_noise", 1, "noise", NOISE, faithful_jpeg=jpeg, quantize="truncate"), CLEAN_CELL):
        plain = STANDARD.normalize(engine.corrupt_batch(cell, x, ids, 0, fmt))
        fused = engine.corrupt_batch(cell, x, ids, 0, fmt, STANDARD)
        assert torch.equal(fused, plain)
        assert fused.is_contiguous(memory_format=fmt) or not cell.faithful_jpeg  # the JPEG step writes the layout
    assert torch.equal(x, torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3)))


def test_quantize_is_the_generators_8_bit_step_and_is_recorded(tiny, samples, tmp_path):
    x = torch.rand(2, 3, 32, 32)
    ids = torch.tensor([1, 2])
    floats = engine.corrupt_batch(Cell("test_noise", 1, "noise", NOISE), x, ids, 0)
    truncated = engine.corrupt_batch(Cell("test_noise", 1, "noise", NOISE, quantize="truncate"), x, ids, 0)
    rounded = engine.corrupt_batch(Cell("test_noise", 1, "noise", NOISE, quantize="round"), x, ids, 0)
    assert torch.allclose(truncated * 255, (floats.double() * 255 + 2.0 ** -10).floor().float(), atol=1e-4)
    assert torch.allclose(rounded * 255, (floats.double() * 255).round().float(), atol=1e-4)
    assert not torch.equal(truncated, rounded)
    cells = {mode: [Cell("test_noise", 2, "noise", NOISE, quantize=mode)] for mode in ("none", "truncate")}
    stores = {mode: ResultStore(tmp_path / mode) for mode in cells}
    for mode, cell in cells.items():
        evaluate(tiny, samples, cell, _settings(), stores[mode], CTX)
    assert [stores[m].rows()["quantize"].iloc[0] for m in cells] == ["none", "truncate"]
    assert stores["none"].rows()["cell_id"].iloc[0] != stores["truncate"].rows()["cell_id"].iloc[0]
    assert Cell("x", 1, "noise", NOISE, faithful_jpeg=True).quantize_mode == "truncate"  # JPEG truncates first
    assert CLEAN_CELL.quantize_mode == "none"
    with pytest.raises(ValueError, match="suite.quantize=floor is not a mode"):
        SuiteSpec(quantize="floor")


def test_atomic_write_leaves_a_readable_file_and_no_temporaries(tmp_path):
    """mkstemp's private 0600 must not leak into results others read (umask 022 -> 0644)."""
    import os
    import stat

    from robustbench_in.files import atomic_write

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "t.csv", lambda p: p.write_text("a\n1\n"))
    finally:
        os.umask(old)
    assert path.read_text() == "a\n1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_unit_float_is_levels_over_255_across_blocks():
    """The blocked uint8 -> float conversion the engine feeds the corruptions gives the same bits as
    ``x.float() / 255`` for every level, over more images than one block holds (blocks of ~2 MiB: 3 images here)."""
    levels = torch.randint(0, 256, (7, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    levels[0, 0, 1, :] = torch.arange(224, dtype=torch.uint8)
    levels[0, 0, 2, :32] = torch.arange(224, 256, dtype=torch.uint8)
    out = engine.unit_float(levels)
    assert out.dtype == torch.float32 and out.shape == levels.shape
    assert torch.equal(out, levels.float() / 255.0)
    assert torch.equal(engine.unit_float(levels[:0]), levels[:0].float())


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("jpeg,quantize", [(True, "truncate"), (False, "truncate"), (False, "round"), (False, "none")])
def test_uint8_images_give_the_float_path_result_bit_for_bit(fmt, jpeg, quantize):
    """The engine hands cells uint8 levels where the corruption has an 8-bit twin (pixelate, jpeg_compression) and
    floats elsewhere; either way, and for the clean cell and a float-only corruption given uint8, the model input
    has the same bits as the float path's, normalised or not."""
    from corruptions import get_corruption
    from robustbench_in.data.preprocessing import STANDARD

    levels = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    ids = torch.tensor([4, 5, 6])
    cells = [Cell(name, 3, "digital", get_corruption(name), faithful_jpeg=jpeg, quantize=quantize)
             for name in ("pixelate", "jpeg_compression")]
    cells += [Cell("test_noise", 2, "noise", NOISE, faithful_jpeg=jpeg, quantize=quantize), CLEAN_CELL]
    assert [engine.takes_levels(c) for c in cells] == [True, True, False, False]
    for cell in cells:
        for preprocessing in (None, STANDARD):
            floats = engine.corrupt_batch(cell, levels.float() / 255, ids, 0, fmt, preprocessing)
            ours = engine.corrupt_batch(cell, levels, ids, 0, fmt, preprocessing)
            assert ours.dtype == torch.float32 and torch.equal(ours, floats), cell.name
