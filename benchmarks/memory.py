"""Peak memory against the data set's size: the same suite on 500 and on 5,000 images (the samples repeated).

Each size runs in a fresh process (so its peak is its own): the host's peak resident set (ru_maxrss) and, on CUDA,
the device's peak allocated memory. With the CPU's streaming path the host peak must not grow with the data set
(issue 13: by no more than 20% from 500 to 5,000 images); with a device cache the device peak is bounded by
two shards (runtime.shard_size), not by the data set. Prints a table and writes <out>/memory.csv. Run:

    python benchmarks/memory.py [--sizes 500 5000] [--model efficientnet_lite0] [--set runtime.cache=host ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(args) -> None:
    """One evaluation of --images images (the samples repeated); prints its peaks as JSON."""
    import torch
    from omegaconf import OmegaConf

    from robustbench_in.data import build_dataset
    from robustbench_in.evaluate import EvalContext, ResultStore, evaluate
    from robustbench_in.evaluate.suite import build_cells
    from robustbench_in.models import create_model
    from throughput import compose, repeated

    torch.set_num_threads(args.threads)
    cfg = compose(argparse.Namespace(model=args.model, suite=args.suite, images=500, device=args.device,
                                     set=[*args.set, "suite.include_clean=false"]))
    runtime = OmegaConf.to_object(cfg.runtime)
    images = build_dataset(OmegaConf.to_object(cfg.data))
    images = repeated(images, -(-args.images // len(images.items)))
    images.items = images.items[:args.images]
    entry = create_model(OmegaConf.to_object(cfg.model))
    ctx = EvalContext(dataset_name="memory", backend="benchmark", versions="", git_commit="",
                      model_identity={"name": entry.name})
    cuda = runtime.torch_device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    notes: list[str] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows, _ = evaluate(entry, images, build_cells(OmegaConf.to_object(cfg.suite)), runtime, ResultStore(tmp),
                           ctx, log=notes.append)
    print(json.dumps({"images": args.images, "cells": len(rows), "seconds": time.perf_counter() - t0,
                      "host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
                      "notes": "; ".join(notes)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="*", type=int, default=[500, 5000])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--suite", default="imagenet_c")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--set", nargs="*", default=["suite.corruptions=[contrast]", "suite.severities=[3]"],
                    help="overrides (default: one cheap cell, since memory, not speed, is measured)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        args.images = args.child
        return child(args)
    results = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--model", args.model, "--suite", args.suite,
               "--threads", str(args.threads), "--set", *args.set, *(["--device", args.device] if args.device else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
        if out.returncode:
            sys.exit(f"memory.py: the run on {n} images failed:\n{out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]
    print(f"{args.model}, suite={args.suite} {' '.join(args.set)}; {args.threads} threads")
    print(f"{'images':>8}{'cells':>7}{'seconds':>9}{'host peak MB':>14}{'growth':>8}{'device peak MB':>16}")
    for r in results:
        growth = r["host_peak_mb"] / base["host_peak_mb"] - 1
        r["host_growth"] = growth
        print(f"{r['images']:>8}{r['cells']:>7}{r['seconds']:>9.1f}{r['host_peak_mb']:>14.0f}{100 * growth:>7.1f}%"
              f"{r['device_peak_mb']:>16.0f}")
    if results[0]["notes"]:
        print(f"notes: {results[0]['notes']}")
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "memory.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["date", "model", "suite", "overrides", *results[0]])
        writer.writeheader()
        for r in results:
            writer.writerow({"date": time.strftime("%Y-%m-%d"), "model": args.model, "suite": args.suite,
                             "overrides": " ".join(args.set), **r})
    print(f"wrote {args.out / 'memory.csv'}")


if __name__ == "__main__":
    main()
