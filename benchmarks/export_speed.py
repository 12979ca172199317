"""Export speed: ms per written image of ``task=export`` vs the reference package writing the same images.

Both sides start from the same sample files and end with quality-85 JPEG files on disk: decode, resize 256 and
center-crop 224, corrupt at one severity, truncate to uint8, encode, write. Ours is :func:`export_suite` (one
corruption per run); the reference is imagecorruptions-imaug's ``corrupt`` (the original generator for frost and
elastic_transform, as in ``_common.reference``) saved with PIL, one process per thread. Measured with one thread
on each side (ours: one torch thread, one writer thread) and with every core; "no fsync" is ours without the
fsync of each atomic write (the reference does not sync). Best of ``--repeats`` runs. Writes ``export_speed.csv``
and the exported trees into ``--out`` (default a temporary folder; never the repository). Run:

    python benchmarks/export_speed.py [--images 32] [--severity 3] [--corruptions fog contrast] [--out DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch: huge pages for the CPU allocator (main.py)

import argparse
import contextlib
import csv
import multiprocessing
import shutil
import tempfile
import time
from unittest import mock
from pathlib import Path

import numpy as np
from PIL import Image

from _common import reference, sample_root

import torch  # noqa: E402  (after _common, which sets up the import path)

from robustbench_in.data import STANDARD, DataSpec, build_dataset
from robustbench_in.data.loader import open_rgb
from robustbench_in.evaluate import Runtime, SuiteSpec
from robustbench_in.export import export_suite

CORRUPTIONS = ("gaussian_noise", "defocus_blur", "frost", "fog", "contrast", "jpeg_compression")
SINGLE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def reference_job(job: tuple[str, str, int, int, str]) -> None:
    """One image the reference way: decode, crop, corrupt (seeded), np.uint8, PIL quality-85 JPEG."""
    name, path, severity, seed, out = job
    crop = STANDARD.geometry(open_rgb(path))
    image = reference(name, crop, severity, seed)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out, quality=85)


def _single_threaded_worker() -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def time_reference(images, name: str, severity: int, processes: int, repeats: int, out: Path) -> float:
    """Best-of-``repeats`` ms per written image for the reference, in ``processes`` single-threaded processes
    (started and warmed up beforehand)."""
    jobs = [(name, str(i.path), severity, i.image_id, str(out / name / str(severity) / i.key)) for i in images.items]
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)  # the spawned workers' BLAS/OpenMP read these when they start
    try:
        with multiprocessing.get_context("spawn").Pool(processes, initializer=_single_threaded_worker) as pool:
            pool.map(reference_job, jobs[:processes])  # warm-up: imports and lazy tables
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                pool.map(reference_job, jobs, chunksize=1)
                best = min(best, time.perf_counter() - t0)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return best / len(jobs) * 1e3


def time_ours(images, name: str, severity: int, threads: int, args, out: Path, fsync: bool = True) -> float:
    """Best-of-``repeats`` ms per written image for ``export_suite`` with ``threads`` torch threads (and one writer
    thread when that is 1, else the default pool); ``fsync=False`` times it without atomic_write's fsync."""
    suite = SuiteSpec(name=name, include_clean=False, corruptions=[name], severities=[severity])
    runtime = Runtime(device="cpu", workers=args.workers, batch_size=args.batch_size, progress=False)
    writers = 1 if threads == 1 else None
    torch.set_num_threads(threads)
    warm = build_dataset(DataSpec(name="imagenet_folder", root=images.root, max_images=2))
    export_suite(warm, suite, STANDARD, out.parent / "warm-up", runtime=runtime, threads=writers,
                 log=lambda m: None, overwrite=True)
    best = float("inf")
    with contextlib.ExitStack() as stack:
        if not fsync:
            stack.enter_context(mock.patch("os.fsync", lambda fd: None))
        for _ in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            export_suite(images, suite, STANDARD, out, runtime=runtime, threads=writers, log=lambda m: None)
            best = min(best, time.perf_counter() - t0)
    return best / len(images.items) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--corruptions", nargs="*", default=list(CORRUPTIONS))
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for ours (0 = decode in-process)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs per side (a shared machine)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the CSV and the trees (default: a tmp dir)")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="export_speed-"))
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root())))
    images.items = images.items[::max(1, len(images.items) // args.images)][:args.images]
    cores = os.cpu_count() or 1
    rows = []
    print(f"{len(images.items)} sample images, severity {args.severity}, 224x224 quality-85 JPEG written; "
          f"{cores} cores; best of {args.repeats}")
    print(f"{'corruption':<18}{'threads':>8}{'ours ms/img':>13}{'no fsync':>10}{'ref ms/img':>12}{'speed-up':>10}")
    for threads in sorted({1, cores}):
        for name in args.corruptions:
            kw = dict(name=name, severity=args.severity, threads=threads, args=args)
            ours = time_ours(images, out=out / f"ours-{threads}-{name}", **kw)
            no_fsync = time_ours(images, out=out / f"ours-nofsync-{threads}-{name}", fsync=False, **kw)
            ref = time_reference(images, name, args.severity, threads, args.repeats, out / f"reference-{threads}")
            rows.append({"corruption": name, "severity": args.severity, "images": len(images.items),
                         "threads": threads, "ours_ms_per_image": round(ours, 2),
                         "ours_no_fsync_ms_per_image": round(no_fsync, 2), "reference_ms_per_image": round(ref, 2),
                         "speedup": round(ref / ours, 2)})
            print(f"{name:<18}{threads:>8}{ours:>13.2f}{no_fsync:>10.2f}{ref:>12.2f}{ref / ours:>9.1f}x")
        gm = float(np.exp(np.mean([np.log(r["speedup"]) for r in rows if r["threads"] == threads])))
        print(f"{'geometric mean':<18}{threads:>8}{'':>35}{gm:>9.1f}x")
    with open(out / "export_speed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"csv: {out / 'export_speed.csv'}")


if __name__ == "__main__":
    main()
