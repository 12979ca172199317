"""Corruption speed: ms per image, ours vs the reference, at one thread on both sides and at all threads on both sides.

Covers ImageNet-C's 15 and its 4 extras (reference: imagecorruptions-imaug) and the 10 ImageNet-C-bar corruptions
(reference: ``cbar_reference.py``, the numpy re-run of the original generator), on sample crops at 224x224,
severity 3 unless told otherwise. Ours runs as the engine calls it (``apply_corruption(..., check_input=False)``,
a batch of ``--images``, output cleanup and allocation included; for a corruption with an 8-bit twin, e.g.
pixelate, ``apply_corruption_levels`` on the uint8 batch, as the engine does: uint8 in and out like the reference,
column ``ours_path``); the reference runs image by image on uint8 HWC arrays (``--reference-images``; fewer
where one image takes long, the same ones up to 4 times where it is quick). Two tables, in one run:

* **1 thread:** torch, OpenCV and the reference's BLAS/OpenMP at one thread (set before numpy is imported), both in
  this process, interleaved, best of ``--repeats``, timed in thread CPU time so that other load on the machine
  does not count (on an idle machine it equals wall time);
* **all threads** (``--threads``, default all cores): ours with that many torch threads; the reference, which is
  single-threaded code, on a pool of that many processes, the images split evenly between them (how one would
  generate the data set in parallel); wall time. On a busy machine this table mostly measures contention.

Beside each table, the model-only limit: EfficientNet-Lite0 with its real weights, channels_last,
``inference_mode``, the same batch and threads, ms per image (the fastest the network itself runs). Writes the
rows as CSV (``--out``, default ``corruption_speed.csv`` in a new temporary folder). Run:

    python benchmarks/corruption_speed.py [--images 64] [--reference-images 16] [--threads N] [--severity 3]
        [--all-severities] [--corruptions pixelate jpeg_compression] [--device cpu|cuda] [--no-reference]
        [--out FILE_OR_FOLDER]

On a GPU (``--device cuda``) there is one table, at ``--threads`` (the reference's processes); ``--no-reference``
times ours and the model only.
"""

from __future__ import annotations

import os

# Before numpy, scipy and torch load: the reference's BLAS/OpenMP single-threaded. torch.set_num_threads and
# cv2.setNumThreads set ours explicitly per table.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch: huge pages for the CPU allocator (main.py)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import reference_any, sample_crops  # noqa: E402

import corruptions  # noqa: E402
from corruptions import apply_corruption, apply_corruption_levels, derive_seeds, get_corruption  # noqa: E402
from robustbench_in.models import ModelSpec, create_model  # noqa: E402

FIELDS = ("threads", "suite", "corruption", "severity", "ours_path", "ours_ms_per_image", "ref_ms_per_image", "speedup",
          "ours_images", "ref_images", "model_ms_per_image", "timer")
REF_SECONDS = 1.0  # time budget of one reference timing: slow references get fewer images (at least 2)
REF_CYCLES = 4  # fast references go over their images up to this many times per timing


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(n)


def reference_limits():
    """threadpoolctl's limit to one BLAS/OpenMP thread where it is installed (the variables above do it otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def best_of(fn, repeats: int, clock, sync: bool) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (already warm)."""
    best = math.inf
    for _ in range(repeats):
        start = clock()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, clock() - start)
    return best


def model_limit(x: torch.Tensor, repeats: int, clock, sync: bool) -> float:
    """ms/image of EfficientNet-Lite0's forward pass at its fastest: real weights, channels_last, inference_mode."""
    model = create_model(ModelSpec(name="efficientnet_lite0")).module.to(x.device).eval()
    model = model.to(memory_format=torch.channels_last)
    batch = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(batch)
        return best_of(lambda: model(batch), repeats, clock, sync) / len(x) * 1e3


# ------------------------------------------------------------------------------------------ the reference's pool

_POOL_IMAGES: list[np.ndarray] = []


def _init_worker(images: list[np.ndarray]) -> None:
    """A reference worker: one thread, the images kept here, so a task carries names and indices only."""
    set_threads(1)
    _POOL_IMAGES[:] = images


def _run_reference(task: tuple[str, int, list[int], list[int]]) -> None:
    name, severity, indices, seeds = task
    with reference_limits():
        for i, seed in zip(indices, seeds):
            reference_any(name, _POOL_IMAGES[i], severity, seed)


class Reference:
    """The reference on ``images``: in this process (``pool=None``), or on a process pool, the images split into one
    contiguous chunk per worker."""

    def __init__(self, images: list[np.ndarray], pool: ProcessPoolExecutor | None, workers: int = 1):
        self.images, self.pool, self.workers = images, pool, workers
        if pool is None:
            _POOL_IMAGES[:] = images

    def __call__(self, name: str, severity: int, n: int, seeds: list[int]) -> None:
        """``n`` images, the stored ones over and over (a cheap reference needs many for the pool's per-call cost
        to vanish)."""
        m = len(self.images)
        chunks = [range(n * k // self.workers, n * (k + 1) // self.workers) for k in range(self.workers)]
        tasks = [(name, severity, [i % m for i in c], [seeds[i % m] for i in c]) for c in chunks if c]
        if self.pool is None:
            _run_reference(tasks[0])
        else:
            list(self.pool.map(_run_reference, tasks))

    def warm(self, name: str, severity: int, seeds: list[int]) -> int:
        """Warm up (JIT, lazy tables; in every worker) and choose how many images one timing uses: as many as fit
        ``REF_SECONDS``, at least 2, at most ``REF_CYCLES`` times the stored ones."""
        n = min(self.workers, len(self.images))
        self(name, severity, n, seeds)
        start = time.perf_counter()
        self(name, severity, n, seeds)
        per_image = max((time.perf_counter() - start) / n, 1e-5)
        return int(min(REF_CYCLES * len(self.images), max(2, REF_SECONDS * self.workers / per_image)))


# ------------------------------------------------------------------------------------------------------ one table


def measure(name: str, severity: int, x, levels, ids, ref: Reference | None, args, clock) -> dict:
    """ours vs the reference (if any) for one corruption x severity, interleaved, best of ``args.repeats`` each.
    ``x``: the float batch; ``levels``: the same as uint8, for corruptions the engine runs on 8-bit levels."""
    sync = x.device.type == "cuda"
    corruption = get_corruption(name)
    seeds = derive_seeds(0, ids, name, severity).to(x.device)
    ref_seeds = [int(s) for s in derive_seeds(1, ids, name, severity)]
    path = "levels" if corruption.levels_fn is not None else "float"

    def ours(n=len(x)):
        if path == "levels":
            apply_corruption_levels(corruption, levels[:n], severity, seeds[:n])
        else:
            apply_corruption(corruption, x[:n], severity, seeds[:n], check_input=False)

    ours(2)  # lazy tables, kernels
    n_ref = ref.warm(name, severity, ref_seeds) if ref is not None else 0
    ours_s, ref_s = math.inf, math.inf
    for _ in range(args.repeats):
        ours_s = min(ours_s, best_of(ours, 1, clock, sync))
        if ref is not None:
            with reference_limits():
                ref_s = min(ref_s, best_of(lambda: ref(name, severity, n_ref, ref_seeds), 1, clock, False))
    ours_ms = ours_s / len(x) * 1e3
    ref_ms = ref_s / n_ref * 1e3 if ref is not None else math.nan
    return {"corruption": name, "severity": severity, "ours_path": path, "ours_ms_per_image": round(ours_ms, 4),
            "ref_ms_per_image": round(ref_ms, 4), "speedup": round(ref_ms / ours_ms, 3), "ours_images": len(x),
            "ref_images": n_ref}


def table(threads: int, x, levels, ids, ref_images, names, severities, args) -> list[dict]:
    """One table: every corruption x severity at ``threads`` on both sides, printed as it goes."""
    set_threads(threads)
    cpu_time = threads == 1 and x.device.type == "cpu"
    clock, timer = (time.thread_time, "thread CPU time") if cpu_time else (time.perf_counter, "wall time")
    pool = None
    if threads > 1 and not args.no_reference:
        pool = ProcessPoolExecutor(threads, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(ref_images,))
        list(pool.map(time.sleep, [1.0] * threads))  # start every worker now (they start on demand), not in a timing
    model_ms = model_limit(x, max(2, args.repeats), clock, x.device.type == "cuda")
    where = "none" if args.no_reference else "in this process" if pool is None else f"on {threads} processes"
    print(f"\n== {threads} thread{'s' * (threads > 1)} on both sides ({timer}; reference {where}) ==")
    print(f"model-only limit (EfficientNet-Lite0, real weights, channels_last): {model_ms:.2f} ms/image\n")
    print(f"{'corruption':<28}{'sev':>4}{'ours ms/img':>13}{'ref ms/img':>12}{'speed-up':>10}{'ours/model':>12}")
    suite = {n: s for s, group in (("imagenet_c", corruptions.IMAGENET_C), ("imagenet_c_extra",
             corruptions.IMAGENET_C_EXTRA), ("imagenet_c_bar", corruptions.IMAGENET_C_BAR)) for n in group}
    rows = []
    try:
        for name in names:
            for severity in severities:
                ref = None if args.no_reference else Reference(ref_images, pool, threads if pool else 1)
                r = measure(name, severity, x, levels, ids, ref, args, clock)
                r.update(threads=threads, suite=suite.get(name, ""), model_ms_per_image=round(model_ms, 4),
                         timer=timer)
                rows.append(r)
                ref_ms, speedup = ("-", "-") if ref is None else (f"{r['ref_ms_per_image']:.2f}",
                                                                  f"{r['speedup']:.2f}x")
                label = name + (" [uint8]" if r["ours_path"] == "levels" else "")
                print(f"{label:<28}{severity:>4}{r['ours_ms_per_image']:>13.2f}{ref_ms:>12}{speedup:>10}"
                      f"{r['ours_ms_per_image'] / model_ms:>11.2f}x", flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    summarise(rows)
    return rows


def summarise(rows: list[dict]) -> None:
    rows = [r for r in rows if not math.isnan(r["speedup"])]
    if not rows:
        return
    ratios = np.array([r["speedup"] for r in rows])
    slowest = rows[int(np.argmin(ratios))]
    slower = [f"{r['corruption']} s{r['severity']} ({r['speedup']:.2f}x)" for r in rows if r["speedup"] < 1.0]
    print(f"\ngeometric-mean speed-up {math.exp(np.log(ratios).mean()):.2f}x; slowest relative: "
          f"{slowest['corruption']} s{slowest['severity']} ({slowest['speedup']:.2f}x); slower than the reference: "
          f"{', '.join(slower) or 'none'}")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64, help="our batch (the engine's CPU batch is 64)")
    ap.add_argument("--reference-images", type=int, default=16, help="at most this many for the reference")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the all-thread table's threads")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--all-severities", action="store_true", help="severities 1-5 instead of --severity")
    ap.add_argument("--corruptions", nargs="*", default=None, help="default: ImageNet-C, its extras, C-bar")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many timings, interleaved")
    ap.add_argument("--device", default="cpu", help="where ours and the model run (the reference: CPU)")
    ap.add_argument("--no-reference", action="store_true", help="ours and the model only (e.g. on a GPU)")
    ap.add_argument("--out", type=Path, default=None,
                    help="CSV file, or a folder for corruption_speed.csv (default: a new temporary folder)")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    names = args.corruptions or [*corruptions.IMAGENET_C, *corruptions.IMAGENET_C_EXTRA, *corruptions.IMAGENET_C_BAR]
    severities = [1, 2, 3, 4, 5] if args.all_severities else [args.severity]
    crops, _, ids = sample_crops(args.images)
    levels = crops.to(args.device)
    x = levels.float().div(255.0)
    ref_images = [c.permute(1, 2, 0).numpy().copy() for c in crops[: args.reference_images]]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"{len(x)} images (reference: up to {len(ref_images)}) at {tuple(x.shape[-2:])}, severities {severities}, "
          f"device {x.device}, {os.cpu_count()} cores, load average {load:.1f}")
    if load > 0.5 * (os.cpu_count() or 1):
        print("note: the machine is busy; the all-thread table then mostly measures the contention (threads of a "
              "parallel op wait for each other), and batched code that streams memory suffers more than the "
              "reference's cache-sized images")
    start = time.perf_counter()
    # on a GPU one table (threads only set the reference's processes); on a CPU, 1 thread and then all
    counts = [args.threads] if x.device.type != "cpu" else sorted({1, args.threads})
    rows = [r for threads in counts for r in table(threads, x, levels, ids, ref_images, names, severities, args)]
    out = args.out or Path(tempfile.mkdtemp(prefix="corruption_speed_"))
    if out.suffix != ".csv":
        out = out / "corruption_speed.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{len(rows)} rows in {time.perf_counter() - start:.0f} s; table: {out}")


if __name__ == "__main__":
    main()
