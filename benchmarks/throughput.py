"""End-to-end throughput of a suite against the model-only limit, measured in the same run.

The end-to-end figure is what ``python main.py`` does: decode each sample image once, then every (corruption,
severity) cell of the suite on the device: corrupt -> [JPEG / 8-bit step] -> normalise -> model -> records ->
results files; images/s counts one image of one cell as one classification. The limit is the fastest the model
itself runs on the same device, batch size, precision and thread count: its real weights where it has them
(random weights can hit denormals on CPU), the faster of NCHW and channels_last, inference mode, one batch of real
normalised crops classified over and over. It is reported two ways: the best single batch (an upper bound: on a
shared machine whose speed drifts, the maximum of many short timings is a lucky one), and the sustained rate, all
images over all seconds of a loop like the end-to-end run's, measured right before and right after it (the mean
of the two, so a drift of the machine during the run counts on both sides). On CPU the run's own forward calls
are clocked too: their share of its wall time is the drift-free figure. The ratios say how close the pipeline is
to being model-bound.
Targets (issue 13): >= 85% on CPU for efficientnet_lite0 with suite=imagenet_c and the default runtime; >= 80% on
GPU for resnet50. Prints a table and appends it to <out>/throughput.csv. Run:

    python benchmarks/throughput.py [--model efficientnet_lite0] [--suite imagenet_c] [--images 64] [--repeat 1]
        [--threads N] [--set runtime.cache=host runtime.compile=true ...] [--out benchmarks/results]
    python benchmarks/throughput.py --model torchvision --set model.name=resnet50 model.random_init=true \\
        --images 500 --repeat 10   # GPU: 5,000 images (the samples repeated)
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch, as main.py does

import argparse
import contextlib
import csv
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

from _common import REPO, sample_crops, sample_root

from robustbench_in.data import build_dataset
from robustbench_in.evaluate import EvalContext, ResultStore, engine, evaluate
from robustbench_in.evaluate.engine import make_scorer
from robustbench_in.evaluate.suite import build_cells
from robustbench_in.models import create_model

FULL_IMAGENET_C = 50_000 * (15 * 5 + 1)  # classifications in the full evaluation: 15 corruptions x 5 + clean


def compose(args) -> "DictConfig":  # noqa: F821
    """The run's config exactly as main.py composes it from the same overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from robustbench_in.config import register_configs

    register_configs()
    overrides = [f"model={args.model}", f"suite={args.suite}", "data=imagenet_folder",
                 f"data.root={sample_root()}", f"data.max_images={args.images}", "runtime.progress=false",
                 *([f"runtime.device={args.device}"] if args.device else []), *args.set]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return hydra_compose(config_name="config", overrides=overrides)


def repeated(images, times: int):
    """The sample images ``times`` over, each repeat with its own key (so its own image id and seeds)."""
    images.items = [replace(item, key=f"{item.key}#{r}") if r else item
                    for r in range(times) for item in images.items]
    return images


def limit_input(entry, runtime, batch: int) -> torch.Tensor:
    """One batch of real normalised crops on the run's device: the run's batch size even from fewer samples."""
    crops, _, _ = sample_crops(batch)
    crops = crops.repeat(-(-batch // len(crops)), 1, 1, 1)[:batch]
    return entry.preprocessing.normalize(crops.to(runtime.torch_device).float().div(255.0))


def model_limit(entry, runtime, batch: int, seconds: float = 6.0) -> dict:
    """Images/s of the bare forward pass: the faster memory format, best of repeated timed loops."""
    device = runtime.torch_device
    x = limit_input(entry, runtime, batch)
    model = entry.module.to(device).eval()
    best = {}
    for name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        model = model.to(memory_format=fmt)
        xf = x.contiguous(memory_format=fmt)
        with torch.inference_mode(), runtime.autocast():
            model(xf)  # warm-up: kernels, allocator
            rates, t_end = [], time.perf_counter() + seconds / 2
            while time.perf_counter() < t_end or len(rates) < 3:
                t0 = time.perf_counter()
                model(xf)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                rates.append(len(xf) / (time.perf_counter() - t0))
        best[name] = max(rates)
    fmt = max(best, key=best.get)
    return {"limit_images_per_s": best[fmt], "limit_format": fmt, "nchw_images_per_s": best["nchw"]}


def sustained_rate(entry, runtime, batch: int, fmt: str, seconds: float | None = None) -> float:
    """Images/s of the bare forward pass in ``fmt`` over a whole timed loop (total images / total seconds): 8 s
    on CPU, whose speed drifts, 3 s on a GPU."""
    seconds = seconds or (8.0 if runtime.torch_device.type == "cpu" else 3.0)
    device = runtime.torch_device
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    model = entry.module.to(device).eval().to(memory_format=memory_format)
    x = limit_input(entry, runtime, batch).contiguous(memory_format=memory_format)
    with torch.inference_mode(), runtime.autocast():
        model(x)
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or done < 3 * batch:
            model(x)
            done += batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return done / (time.perf_counter() - t0)


def end_to_end(entry, images, cfg) -> dict:
    """Wall-clock images/s of evaluate() on every cell of the suite, into a fresh results folder."""
    suite, runtime = OmegaConf.to_object(cfg.suite), OmegaConf.to_object(cfg.runtime)
    cells = build_cells(suite)
    ctx = EvalContext(dataset_name=images.name, backend="benchmark", versions="", git_commit="",
                      model_identity={"name": entry.name})
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, forward_clock(runtime.torch_device) as in_model:
        t0 = time.perf_counter()
        rows, _ = evaluate(entry, images, cells, runtime, ResultStore(tmp), ctx, log=notes.append)
        wall = time.perf_counter() - t0
    n = sum(r["n"] for r in rows)
    return {"cells": len(cells), "classifications": n, "wall_s": wall, "images_per_s": n / wall,
            "model_share": in_model[0] / wall if in_model else float("nan"), "notes": "; ".join(notes)}


@contextlib.contextmanager
def forward_clock(device: torch.device):
    """Seconds the end-to-end run spends inside the model's forward pass (CPU only, where a call returns when its
    work is done; on a GPU the list stays empty). Their share of the wall time is the ratio measured in the same
    moments as the run, which a machine's drift cannot skew; the ratio to the limit adds what the rest of the
    pipeline costs the model itself (caches, memory)."""
    spent: list[float] = []
    real = engine.make_scorer

    def make_timed_scorer(*args, **kwargs):
        scorer = real(*args, **kwargs)
        forward = scorer.forward

        def timed(x):
            t0 = time.perf_counter()
            out = forward(x)
            spent[0] += time.perf_counter() - t0
            return out

        scorer.forward = timed
        return scorer

    if device.type == "cpu":
        spent.append(0.0)
        engine.make_scorer = make_timed_scorer
    try:
        yield spent
    finally:
        engine.make_scorer = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0", help="a model option (zoo entry, torchvision, timm)")
    ap.add_argument("--suite", default="imagenet_c")
    ap.add_argument("--images", type=int, default=64, help="sample images (<= 500)")
    ap.add_argument("--repeat", type=int, default=1, help="use the sample images this many times over")
    ap.add_argument("--device", default=None, help="runtime.device (default: the runtime's auto)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--set", nargs="*", default=[], help="more overrides, e.g. runtime.cache=host")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose(args)
    runtime = OmegaConf.to_object(cfg.runtime)
    entry = create_model(OmegaConf.to_object(cfg.model))
    images = repeated(build_dataset(OmegaConf.to_object(cfg.data)), args.repeat)
    batch = min(make_scorer(entry, images, runtime, log=lambda s: None).batch_size, len(images.items))
    limit = model_limit(entry, runtime, batch)
    before = sustained_rate(entry, runtime, batch, limit["limit_format"])
    e2e = end_to_end(entry, images, cfg)
    after = sustained_rate(entry, runtime, batch, limit["limit_format"])
    sustained = (before + after) / 2
    row = {"date": time.strftime("%Y-%m-%d"), "device": _device_name(runtime.torch_device), "threads": args.threads,
           "model": entry.name, "suite": cfg.suite.name, "images": len(images.items), **e2e,
           "batch": batch, "precision": runtime.resolved_precision, "channels_last": runtime.use_channels_last,
           "compile": runtime.compile, "cache": runtime.cache, **limit, "sustained_images_per_s": sustained,
           "sustained_before": before, "sustained_after": after,
           "ratio": e2e["images_per_s"] / limit["limit_images_per_s"],
           "ratio_sustained": e2e["images_per_s"] / sustained,
           "full_imagenet_c_h": FULL_IMAGENET_C / e2e["images_per_s"] / 3600, "overrides": " ".join(args.set)}
    _print(row)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "throughput.csv"
    if path.exists() and path.read_text().split("\n", 1)[0] != ",".join(row):  # an older script's columns
        path = args.out / f"throughput-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(f"appended to {path}")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _print(row: dict) -> None:
    print(f"\n{row['device']}, {row['threads']} threads; {row['model']} on suite={row['suite']} ({row['cells']} cells)"
          f" x {row['images']} images; batch {row['batch']}, {row['precision']}, channels_last "
          f"{row['channels_last']}, compile {row['compile']}, cache {row['cache']} {row['overrides']}")
    if row["notes"]:
        print(f"notes: {row['notes']}")
    print(f"{'':<28}{'images/s':>10}{'ms/image':>10}")
    print(f"{'model-only, best batch':<28}{row['limit_images_per_s']:>10.1f}{1e3 / row['limit_images_per_s']:>10.2f}"
          f"   ({row['limit_format']}; NCHW {row['nchw_images_per_s']:.1f})")
    print(f"{'model-only, sustained':<28}{row['sustained_images_per_s']:>10.1f}"
          f"{1e3 / row['sustained_images_per_s']:>10.2f}   (before the run {row['sustained_before']:.1f}, "
          f"after {row['sustained_after']:.1f})")
    print(f"{'end to end (main.py)':<28}{row['images_per_s']:>10.1f}{1e3 / row['images_per_s']:>10.2f}"
          f"   ({row['classifications']} classifications in {row['wall_s']:.1f} s)")
    if row["model_share"] == row["model_share"]:  # not NaN: measured (CPU)
        print(f"time inside the model's forward pass: {100 * row['model_share']:.1f}% of the run's wall time")
    print(f"ratio: {100 * row['ratio_sustained']:.1f}% of the sustained limit, {100 * row['ratio']:.1f}% of the best "
          f"batch; the full ImageNet-C (50,000 images x 76 cells) at this "
          f"rate: {row['full_imagenet_c_h']:.2f} h")


if __name__ == "__main__":
    main()
