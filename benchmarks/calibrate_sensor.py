"""Severity calibration of the sensor suite: EfficientNet-Lite0's top-1 error under every sensor corruption.

Runs the bundled EfficientNet-Lite0 on the shared ImageNet sample (default ../shared/data/imagenet-sample-500
beside the repository, or RBIN_SAMPLES) through robustbench_in's engine, clean plus every sensor corruption x
severity, and prints top-1 error per cell with the delta over clean. The calibration target (issue 4): error rises
monotonically with severity for every corruption and severity 5 costs at least 10 points; rows that miss it are
flagged. ``--max-images N`` evaluates N images spread evenly over the sample (every len/N-th), for quick tuning.
``--gallery`` draws every sensor corruption at severities 1-5 on three different photos (issue 14); the flat
saturated regions they add are measured by ``benchmarks/sensor_artifacts.py``.

    python benchmarks/calibrate_sensor.py --threads 1 --max-images 100
    python benchmarks/calibrate_sensor.py --threads 1                    # all 500 images
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
# three different photos: bright outdoor (sky, snow, rock), dark indoor (candle light, faces), colourful (faces, red)
GALLERY_IMAGES = ("n09193705/n09193705_alp.JPEG", "n02948072/n02948072_candle.JPEG", "n10148035/n10148035_groom.JPEG")


def sample_root(arg: str | None) -> Path:
    root = Path(arg or os.environ.get("RBIN_SAMPLES") or REPO.parent / "shared" / "data" / "imagenet-sample-500")
    if not root.is_dir():
        sys.exit(f"sample images not found at {root}: pass --root or set RBIN_SAMPLES")
    return root


def error_table(rows, names: list[str], severities: list[int]) -> tuple[list[str], list[str]]:
    """Formatted lines of the table (top-1 error in %) and the list of corruptions that miss the target."""
    err = {(r["corruption"], int(r["severity"])): 100.0 * float(r["top1_err"]) for _, r in rows.iterrows()}
    clean = err[("clean", 0)]
    head = (f"{'corruption':24s}" + "".join(f"{'s' + str(s):>7s}" for s in severities)
            + f"{'mean':>7s}{'d(s5)':>7s}  flags")
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


def gallery_tiles(root: Path, names: list[str], images: tuple[str, ...], seed: int = 0) -> list[list[torch.Tensor]]:
    """Per corruption, one row: for each image its clean crop then severities 1-5, with the engine's seeds."""
    from robustbench_in.data import STANDARD, ImageItem, ImageList, make_loader

    missing = [key for key in images if not (root / key).is_file()]
    if missing:
        sys.exit(f"gallery images not found under {root}: {', '.join(missing)}")
    listed = ImageList(name="gallery", items=[ImageItem(path=root / key, label=0, key=key) for key in images])
    batch = next(iter(make_loader(listed, STANDARD, len(images), 0)))
    clean = batch["images"].float() / 255.0
    ids = batch["image_ids"]
    rows = []
    for name in names:
        fn = get_corruption(name)
        out = [fn(clean, s, corruptions.derive_seeds(seed, ids, name, s)) for s in range(1, 6)]
        rows.append([tile for i in range(len(images)) for tile in [clean[i]] + [o[i] for o in out]])
    return rows


def write_gallery(out: Path, root: Path, names: list[str], images: tuple[str, ...] = GALLERY_IMAGES,
                  tile_px: int = 112, seed: int = 0) -> Path:
    """Every sensor corruption (rows) at severities 1-5 next to the clean crop, on each of ``images`` (column
    blocks), as one PNG.

    224 px crops are shown at ``tile_px`` (area-averaged) so that 3 x 6 x 13 tiles stay under 2 MB; the PNG is
    palette-quantised (256 median-cut colours) with Floyd-Steinberg dithering: without it, 256 colours for
    the whole sheet band smooth tints (a white balance error) into flat planes that the corruption does not make.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F
    from PIL import Image

    rows = gallery_tiles(root, names, images, seed)
    blocks, per = len(images), 6
    ratios = [r for b in range(blocks) for r in [1.0] * per + ([0.12] if b < blocks - 1 else [])]
    inch = tile_px / 100.0
    fig = plt.figure(figsize=(sum(ratios) * inch * 1.03 + 0.35, len(names) * inch * 1.03 + 0.45), dpi=100)
    grid = fig.add_gridspec(len(names), len(ratios), width_ratios=ratios, left=0.045, right=0.998, top=1 - 0.42
                            / (len(names) * inch * 1.03 + 0.45), bottom=0.002, wspace=0.03, hspace=0.03)
    for r, (name, tiles) in enumerate(zip(names, rows)):
        for k, tile in enumerate(tiles):
            block, c = divmod(k, per)
            ax = fig.add_subplot(grid[r, block * (per + 1) + c])
            small = F.interpolate(tile.unsqueeze(0), size=(tile_px, tile_px), mode="area")[0]
            ax.imshow(small.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                photo = Path(images[block]).stem.split("_", 1)[-1]
                ax.set_title(f"{photo}: clean" if c == 0 else f"s{c}", fontsize=7)
            if k == 0:
                ax.set_ylabel(name, fontsize=6.5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = Image.open(buffer).convert("RGB")
    palette = sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    sheet.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
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
    verdict = "all corruptions meet the target" if not misses else f"{len(misses)} miss the target: {', '.join(misses)}"
    print("\n" + verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
