"""Flat saturated regions that a sensor corruption adds to a photo (issue 14, "Sensor pass").

A camera that gets exposure, white balance or bit depth wrong still gives a picture with texture in it; a pipeline
that clips in the wrong place paints flat planes of pure white, black or a saturated primary (posterisation). This
measures that: a pixel is **flat saturated** when, in the 8-bit image,

* at least one channel is clipped: 0 or 255 (value <= 0.5/255 or >= 254.5/255 before rounding), and
* its 5x5 neighbourhood is flat: the standard deviation of every channel over the window is below 1 grey level
  (1/255); windows at the border are reflected.

A corruption's **added flat-saturated fraction** of an image is the fraction of all its pixels that are flat
saturated in the corrupted image but not in the clean one (white sky that was already blown out does not count).
The target: at most 20 % per natural photo at severity 5, as a mean over the sample images (the worst image is
reported beside it).

    python benchmarks/sensor_artifacts.py                           # 500 sample images, severities 1-5
    python benchmarks/sensor_artifacts.py --max-images 100 --severities 5 --csv /tmp/flat.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP_LOW = 0.5 / 255.0
CLIP_HIGH = 254.5 / 255.0
FLAT_STD = 1.0 / 255.0  # one grey level
WINDOW = 5
LIMIT = 0.20  # the bound on the mean added fraction at severity 5


def flat_saturated(images: torch.Tensor, window: int = WINDOW, flat_std: float = FLAT_STD) -> torch.Tensor:
    """(N, H, W) bool: pixels with a clipped channel inside a flat ``window`` x ``window`` neighbourhood.

    Values are rounded to 8 bits first, as the model sees them; the local standard deviation comes from box means
    of x and x², in float64 so that a constant window gives exactly 0.
    """
    x = torch.round(images.double().clamp(0.0, 1.0) * 255.0) / 255.0
    clipped = ((x <= CLIP_LOW) | (x >= CLIP_HIGH)).any(1)
    pad = window // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, window, stride=1)
    var = (F.avg_pool2d(padded * padded, window, stride=1) - mean * mean).clamp_min(0.0)
    flat = (var.sqrt() < flat_std).all(1)
    return clipped & flat


def added_flat_saturated(corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """(N,) fraction of each image's pixels that are flat saturated in ``corrupted`` but not in ``clean``."""
    added = flat_saturated(corrupted) & ~flat_saturated(clean)
    return added.flatten(1).double().mean(1)


def measure(names: list[str], severities: list[int], clean: torch.Tensor, ids: torch.Tensor, batch: int = 25,
            seed: int = 0) -> dict[tuple[str, int], torch.Tensor]:
    """Per-image added fractions for every (corruption, severity), with the engine's per-image seeds."""
    from corruptions import derive_seeds, get_corruption

    out = {}
    for name in names:
        fn = get_corruption(name)
        for s in severities:
            parts = []
            for i in range(0, len(clean), batch):
                x, k = clean[i:i + batch], ids[i:i + batch]
                parts.append(added_flat_saturated(fn(x, s, derive_seeds(seed, k, name, s)), x))
            out[(name, s)] = torch.cat(parts)
        print(f"  {name}: " + " ".join(f"s{s} {100 * out[(name, s)].mean():.2f}%" for s in severities), flush=True)
    return out


def summary_rows(fractions: dict[tuple[str, int], torch.Tensor], keys: list[str]) -> list[dict]:
    """One row per cell: mean, 95th percentile and max (in %) over the images, and the worst image."""
    rows = []
    for (name, s), f in fractions.items():
        worst = int(f.argmax())
        rows.append({"corruption": name, "severity": s, "n_images": len(f), "mean_pct": 100 * f.mean().item(),
                     "p95_pct": 100 * torch.quantile(f, 0.95).item(), "max_pct": 100 * f.max().item(),
                     "worst_image": keys[worst]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-images", type=int, default=500, help="this many sample images, spread evenly")
    parser.add_argument("--corruptions", default=None, help="comma-separated subset (default: every sensor one)")
    parser.add_argument("--severities", default="1,2,3,4,5")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default=None, help="write the per-cell table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import corruptions.sensor  # noqa: F401  (registers the sensor corruptions)
    from _common import sample_crops, sample_root
    from corruptions import list_corruptions
    from robustbench_in.data import DataSpec, build_dataset

    names = args.corruptions.split(",") if args.corruptions else list_corruptions("sensor")
    severities = [int(s) for s in args.severities.split(",")]
    crops, _, ids = sample_crops(args.max_images)
    items = build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root()))).items
    keys = {item.image_id: str(item.key) for item in items}
    clean = crops.float() / 255.0
    print(f"added flat-saturated pixels on {len(clean)} sample images (224x224 crops), mean per cell:", flush=True)
    rows = summary_rows(measure(names, severities, clean, ids), [keys.get(int(i), str(int(i))) for i in ids])
    print(f"\n{'corruption':22s}{'sev':>4s}{'mean %':>9s}{'p95 %':>9s}{'max %':>9s}  worst image")
    for r in rows:
        flag = "  > 20 %" if r["severity"] == 5 and r["mean_pct"] > 100 * LIMIT else ""
        print(f"{r['corruption']:22s}{r['severity']:4d}{r['mean_pct']:9.2f}{r['p95_pct']:9.2f}{r['max_pct']:9.2f}  "
              f"{r['worst_image']}{flag}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
        print(f"\nwrote {args.csv}")
    over = [r["corruption"] for r in rows if r["severity"] == 5 and r["mean_pct"] > 100 * LIMIT]
    print("every corruption within the bound at severity 5" if not over else f"over the bound: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
