"""The decoded-image pipeline: the cached paths give the streaming path's per-image records, the cache plan falls
back when memory is short, and the fast-inference settings fail early and clearly."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from robustbench_in.data import DataSpec, build_dataset
from robustbench_in.evaluate import Cell, EvalContext, ResultStore, Runtime, engine, evaluate
from robustbench_in.evaluate.pipeline import CachePlan, ShardPrefetch, decode_shard, plan_cache
from robustbench_in.evaluate.suite import CLEAN_CELL
from robustbench_in.models import ModelSpec, create_model
from corruptions import get_corruption

CTX = EvalContext(dataset_name="t", backend="test", versions="", git_commit="", model_identity={"m": 1})
MB = 2**20


@pytest.fixture(scope="module")
def tiny():
    return create_model(ModelSpec(name="tiny_cnn"))


@pytest.fixture(scope="module")
def folder(sample_root, tmp_path_factory):
    """18 sample images in 9 classes plus one unreadable file, so shards hold a skipped image."""
    root = tmp_path_factory.mktemp("pipeline")
    for cls in sorted(p for p in sample_root.iterdir() if p.is_dir())[:9]:
        (root / cls.name).mkdir()
        for i, img in enumerate(sorted(cls.iterdir())[:1]):
            shutil.copy(img, root / cls.name / img.name)
            shutil.copy(img, root / cls.name / f"copy{i}_{img.name}")
    (root / sorted(p.name for p in root.iterdir())[0] / "broken.JPEG").write_bytes(b"not a jpeg")
    return build_dataset(DataSpec(name="imagenet_folder", root=str(root)))


def _cells():
    """Float cells, and pixelate, which the engine runs on the uint8 images (its 8-bit twin)."""
    return [CLEAN_CELL, *(Cell(n, s, "x", get_corruption(n)) for n in ("gaussian_noise", "contrast") for s in (1, 4)),
            Cell("pixelate", 2, "x", get_corruption("pixelate"))]


def _run(entry, images, tmp_path, name, **kw):
    base = dict(device="cpu", batch_size=4, workers=0, shard_size=8, progress=False)
    store = ResultStore(tmp_path / name)
    notes: list[str] = []
    evaluate(entry, images, _cells(), Runtime(**{**base, **kw}), store, CTX, log=notes.append)
    rows = store.rows().sort_values(["corruption", "severity"]).reset_index(drop=True)
    records = pd.concat([pd.read_parquet(store.root / r).assign(cell=f"{c}{s}")
                         for r, c, s in zip(rows["records"], rows["corruption"], rows["severity"])])
    return rows, records.sort_values(["cell", "image_id"]).reset_index(drop=True), notes


@pytest.mark.parametrize("cache,kw", [("host", {}), ("device", {}), ("host", {"batch_size": 3, "shard_size": 5})])
def test_cached_paths_give_the_streaming_records(tiny, folder, tmp_path, cache, kw):
    _, streamed, _ = _run(tiny, folder, tmp_path, "stream", cache="stream")
    rows, cached, notes = _run(tiny, folder, tmp_path, "cached", cache=cache, **kw)
    assert len(streamed) == 6 * 18 and (rows["n"] == 18).all() and (rows["n_skipped"] == 1).all()
    pd.testing.assert_frame_equal(cached, streamed)
    assert any(n.startswith("cache: host") for n in notes), notes  # on the CPU "device" is the host


@pytest.mark.parametrize("cache", ["stream", "host"])
def test_cells_with_an_8_bit_twin_get_the_uint8_images(tiny, folder, tmp_path, monkeypatch, cache):
    """Streaming or cached, pixelate's cell goes through apply_corruption_levels on the decoded uint8 images (no
    float round trip), once per batch; the float cells never do."""
    calls = []
    real = engine.apply_corruption_levels

    def spy(corruption, levels, severity, seeds):
        calls.append((corruption.name, levels.dtype, len(levels)))
        return real(corruption, levels, severity, seeds)

    monkeypatch.setattr(engine, "apply_corruption_levels", spy)
    _run(tiny, folder, tmp_path, cache, cache=cache)
    assert calls and {c[:2] for c in calls} == {("pixelate", torch.uint8)} and sum(c[2] for c in calls) == 18


def test_streaming_is_the_cpu_default_and_says_nothing(tiny, folder, tmp_path):
    _, _, notes = _run(tiny, folder, tmp_path, "auto")
    assert not any(n.startswith("cache:") for n in notes), notes


def test_a_cache_budget_too_small_falls_back_to_streaming_with_the_same_records(tiny, folder, tmp_path):
    _, streamed, _ = _run(tiny, folder, tmp_path, "stream", cache="stream")
    _, fallback, notes = _run(tiny, folder, tmp_path, "small", cache="host", cache_mb=0)
    assert any(n.startswith("cache: stream") and "exceed the host budget" in n for n in notes), notes
    pd.testing.assert_frame_equal(fallback, streamed)


def test_plan_cache_falls_back_device_then_host_then_stream():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    image = 3 * 224 * 224
    assert plan_cache("auto", cuda, 2048, image, free_device=80 * 2**30).mode == "device"
    assert plan_cache("auto", cpu, 2048, image).mode == "stream"
    # 2 shards of 2048 images = 588 MiB: not within 40% of 1 GB free on the device -> host (pinned)
    short = plan_cache("auto", cuda, 2048, image, free_device=2**30, free_host=64 * 2**30)
    assert short.mode == "host" and "exceed the device budget" in short.reason
    assert plan_cache("device", cuda, 2048, image, free_device=2**30, free_host=2**30).mode == "stream"
    assert plan_cache("device", cpu, 2048, image, free_host=64 * 2**30).mode == "host"
    assert plan_cache("host", cpu, 2048, image, budget_mb=588, free_host=2**40).mode == "host"
    assert plan_cache("host", cpu, 2048, image, budget_mb=587, free_host=2**40).mode == "stream"
    assert plan_cache("device", cuda, 2048, image, budget_mb=700, free_device=1).mode == "device"  # budget rules
    assert plan_cache("stream", cuda, 2048, image, free_device=2**40) == CachePlan(
        "stream", "streaming batch by batch (peak memory: one batch)")


def test_decode_shard_holds_each_readable_image_once_in_one_uint8_tensor(folder):
    from robustbench_in.data.loader import make_loader
    from robustbench_in.data.preprocessing import STANDARD

    shard = list(range(len(folder.items)))
    decoded = decode_shard(make_loader(folder, STANDARD, 4, 0, indices=shard), len(shard), 224,
                           torch.device("cpu"), torch.device("cpu"))
    assert decoded.images.dtype == torch.uint8 and decoded.images.shape == (18, 3, 224, 224)
    assert len(decoded.skipped) == 1 and "broken.JPEG" in decoded.skipped[0][0]
    assert decoded.image_ids.tolist() == [i.image_id for i in folder.items if i.path.name != "broken.JPEG"]
    assert decoded.accepted.shape[0] == 18 and (decoded.accepted[:, 0] == decoded.labels).all()


def test_the_next_shard_is_decoded_in_the_background(folder):
    from robustbench_in.data.preprocessing import STANDARD

    runtime = Runtime(device="cpu", batch_size=4, workers=0, progress=False)
    prefetch = ShardPrefetch(folder, STANDARD, runtime, CachePlan("host", "test"))
    try:
        prefetch.submit(1, [4, 5, 6])
        assert 1 in prefetch.pending
        got = prefetch.get(1, [4, 5, 6])
        assert len(got.images) == 3 and not prefetch.pending
        assert got.image_ids.tolist() == [folder.items[i].image_id for i in (4, 5, 6)]
    finally:
        prefetch.close()


def test_records_stay_on_the_device_until_the_shard_ends(tiny, folder, monkeypatch):
    """score_batch returns tensors (no host copy per batch); records_frame copies each column once."""
    runtime = Runtime(device="cpu", batch_size=4, workers=0, progress=False)
    scorer = engine.Scorer(tiny, runtime)
    x = torch.rand(4, 3, 224, 224)
    accepted = torch.tensor([[1, -1], [2, -1], [3, 7], [4, -1]])
    out = engine.score_batch(scorer, CLEAN_CELL, x, torch.arange(4), accepted)
    assert set(out) == {"pred", "correct1", "correct5", "p_true", "confidence"}
    assert all(isinstance(v, torch.Tensor) and len(v) == 4 for v in out.values())
    frame = engine.records_frame([out, out], torch.arange(8), torch.tensor([1, 2, 3, 4] * 2))
    assert list(frame.columns) == ["image_id", "label", "pred", "correct1", "correct5", "p_true", "confidence"]
    assert len(frame) == 8 and frame["p_true"].dtype == "float32"


def test_compile_failure_is_one_line_naming_the_setting(tiny, monkeypatch):
    def no_compiler(model, *a, **k):
        def run(x):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nlong traceback")
        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    scorer = engine.Scorer(tiny, Runtime(device="cpu", batch_size=2, workers=0, compile=True))
    with pytest.raises(ValueError, match=r"runtime.compile=true: torch.compile failed .*InvalidCxxCompiler.*"
                                         r"use runtime.compile=false") as err:
        scorer.compile()
    assert "\n" not in str(err.value) and scorer.forward is scorer.model


def test_compiled_forward_is_used_when_it_works(tiny, monkeypatch):
    calls = []

    def fake_compile(model, *a, **k):
        def run(x):
            calls.append(x.shape)
            return model(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    scorer = engine.Scorer(tiny, Runtime(device="cpu", batch_size=2, workers=0, compile=True))
    scorer.compile()
    engine.score_batch(scorer, CLEAN_CELL, torch.rand(2, 3, 224, 224), torch.arange(2), torch.tensor([[1], [2]]))
    assert calls == [(2, 3, 224, 224), (2, 3, 224, 224)]  # the probe, then the batch


@pytest.mark.parametrize("kw,message", [({"cache": "gpu"}, "runtime.cache=gpu is not a mode"),
                                        ({"cache_mb": -1}, "runtime.cache_mb=-1 must be >= 0"),
                                        ({"batch_size": 0}, "runtime.batch_size=0 must be >= 1")])
def test_bad_runtime_values_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        Runtime(**kw)


def test_batch_size_and_memory_format_defaults():
    runtime = Runtime(device="cpu")
    assert runtime.batch_size is None and runtime.first_batch_size == 32
    assert runtime.use_channels_last and not Runtime(device="cpu", channels_last=False).use_channels_last
    assert Runtime(device="cpu", batch_size=8).first_batch_size == 8


def test_resuming_with_another_shard_size_never_mixes_shards(tiny, folder, tmp_path, monkeypatch):
    """Killed in its third shard of 8, resumed with shards of 5: the old shards are not taken for the new ones
    (no image twice, none missing), and the records equal an uninterrupted run's."""
    _, reference, _ = _run(tiny, folder, tmp_path, "ref", cache="stream")
    real, calls = engine.corrupt_batch, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * 6 * 2 + 3:  # two shards of 8 (2 batches x 6 cells each), then into the third
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "corrupt_batch", crashing)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, folder, tmp_path, "resumed", cache="stream")
    assert len(list((tmp_path / "resumed" / "partial").rglob("8x*.parquet"))) == 2 * 6
    monkeypatch.setattr(engine, "corrupt_batch", real)
    rows, resumed, _ = _run(tiny, folder, tmp_path, "resumed", cache="stream", shard_size=5)
    assert (rows["n"] == 18).all()
    pd.testing.assert_frame_equal(resumed, reference)
