"""Severity calibration of the sensor suite: EfficientNet-Lite0's top-1 error under every sensor corruption.

Runs the bundled EfficientNet-Lite0 on the shared ImageNet sample (default ../shared/data/imagenet-sample-500
beside the repository, or RBIN_SAMPLES) through robustbench_in's engine, clean plus every sensor corruption x
severity, and prints top-1 error per cell with the delta over clean. The calibration target (issue 4): error rises
monotonically with severity for every corruption and severity 5 costs at least 10 points; rows that miss it are
flagged. ``--max-images N`` evaluates N images spread evenly over the sample (every len/N-th), for quick tuning.

    python benchmarks/calibrate_sensor.py --max-images 100
    python benchmarks/calibrate_sensor.py                       # all 500 images
    python benchmarks/calibrate_sensor.py --gallery docs/img/sensor_gallery.png   # only the gallery picture
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch: huge pages for the CPU allocator (main.py)

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import corruptions  # noqa: E402
import corruptions.sensor  # noqa: E402,F401  (registers the sensor corruptions)
from corruptions import get_corruption, list_corruptions  # noqa: E402
from robustbench_in.data import DataSpec, build_dataset  # noqa: E402
from robustbench_in.evaluate import Cell, EvalContext, ResultStore, Runtime, evaluate  # noqa: E402
from robustbench_in.models import ModelSpec, create_model  # noqa: E402

MIN_SEVERITY5_DELTA = 10.0  # points of top-1 error over clean
GALLERY_IMAGE = "n03933933/n03933933_pier.JPEG"  # straight lines, sky, water and buildings show every effect


def sample_root(arg: str | None) -> Path:
    root = Path(arg or os.environ.get("RBIN_SAMPLES") or REPO.parent / "shared" / "data" / "imagenet-sample-500")
    if not root.is_dir():
        sys.exit(f"sample images not found at {root}: pass --root or set RBIN_SAMPLES")
    return root


def error_table(rows, names: list[str], severities: list[int]) -> tuple[list[str], list[str]]:
    """Formatted lines of the table (top-1 error in %) and the list of corruptions that miss the target."""
    err = {(r["corruption"], int(r["severity"])): 100.0 * float(r["top1_err"]) for _, r in rows.iterrows()}
    clean = err[("clean", 0)]
    head = f"{'corruption':24s}" + "".join(f"{'s' + str(s):>7s}" for s in severities) + f"{'mean':>7s}{'d(s5)':>7s}  flags"
    lines = [head, f"{'clean':24s}{clean:7.1f}", "-" * len(head)]
    misses = []
    for name in names:
        values = [err[(name, s)] for s in severities]
        flags = []
        if any(b < a for a, b in zip(values, values[1:])):
            flags.append("NON-MONOTONE")
        last = values[-1] - clean
        if severities[-1] == 5 and last < MIN_SEVERITY5_DELTA:
            flags.append(f"s5 delta < {MIN_SEVERITY5_DELTA:g}")
        if flags:
            misses.append(name)
        lines.append(f"{name:24s}" + "".join(f"{v:7.1f}" for v in values) + f"{sum(values) / len(values):7.1f}"
                     + f"{last:+7.1f}  " + ", ".join(flags))
    deltas = [[err[(n, s)] - clean for s in severities] for n in names]
    lines.append("-" * len(head))
    lines.append(f"{'mean delta':24s}" + "".join(f"{sum(c) / len(c):+7.1f}" for c in zip(*deltas)))
    return lines, misses


def write_gallery(out: Path, root: Path, names: list[str], image: str = GALLERY_IMAGE, seed: int = 0) -> Path:
    """One sample image under every sensor corruption x severity 1-5 (rows) next to the clean crop, as a PNG.

    Tiles are shown at 200 px (224 px crops) so noise and fringes stay visible; the PNG is palette-quantised (256
    colours) to keep the file small, median cut refined by k-means: plain median cut bands smooth tints (a white
    balance error) into flat planes the corruption does not make.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from robustbench_in.data import STANDARD, ImageItem, ImageList, make_loader

    path = root / image
    if not path.is_file():
        sys.exit(f"gallery image {path} not found")
    one = ImageList(name="gallery", items=[ImageItem(path=path, label=0, key=image)])
    batch = next(iter(make_loader(one, STANDARD, 1, 0)))
    clean = batch["images"].float() / 255.0
    ids = batch["image_ids"]
    rows = []
    for name in names:
        fn = get_corruption(name)
        rows.append([clean[0]] + [fn(clean, s, corruptions.derive_seeds(seed, ids, name, s))[0] for s in range(1, 6)])
    fig, axes = plt.subplots(len(names), 6, figsize=(6 * 1.25, len(names) * 1.25 + 0.3), dpi=160)
    for r, (name, tiles) in enumerate(zip(names, rows)):
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(tile.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {c}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=6.5)
    fig.subplots_adjust(left=0.07, right=0.995, top=0.985, bottom=0.003, wspace=0.03, hspace=0.03)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, kmeans=1).save(
        out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="ImageNet sample folder (<wnid>/*.JPEG)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate this many images, spread evenly")
    parser.add_argument("--corruptions", default=None, help="comma-separated subset of the sensor corruptions")
    parser.add_argument("--severities", default="1,2,3,4,5")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--gallery", default=None, help="only write the gallery PNG to this path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.corruptions.split(",") if args.corruptions else list_corruptions("sensor")
    if args.gallery:
        out = write_gallery(Path(args.gallery), sample_root(args.root), names)
        print(f"gallery: {out} ({out.stat().st_size / 1e6:.2f} MB)")
        return 0

    images = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root(args.root))))
    if args.max_images:
        step = max(1, len(images.items) // args.max_images)
        images.items = images.items[::step][: args.max_images]
    severities = [int(s) for s in args.severities.split(",")]
    cells = [Cell("clean", 0, "clean")] + [Cell(n, s, "sensor", get_corruption(n)) for n in names for s in severities]

    entry = create_model(ModelSpec(name="efficientnet_lite0"))
    settings = Runtime(device=args.device, batch_size=args.batch_size, workers=args.workers)
    ctx = EvalContext(dataset_name=images.name, backend=f"robustbench_in.corruptions-{corruptions.__version__}",
                      versions="calibrate_sensor", git_commit="", model_identity={"source": "efficientnet_lite0",
                                                                                  "weights": entry.weights})
    print(f"EfficientNet-Lite0 on {len(images.items)} images from {images.root}: clean + {len(names)} sensor "
          f"corruptions x {len(severities)} severities", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(args.results or tmp)
        evaluate(entry, images, cells, settings, store, ctx, log=lambda m: print(m, flush=True))
        rows = store.rows()
    rows = rows[rows["n"] == len(images.items)]  # a reused --results folder may hold runs on other subsets
    lines, misses = error_table(rows, names, severities)
    print("\ntop-1 error (%)")
    print("\n".join(lines))
    print("\nall corruptions meet the target" if not misses else f"\n{len(misses)} miss the target: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
