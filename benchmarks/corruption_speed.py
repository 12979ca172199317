"""Corruption speed: ms/image for ours and for the reference (imagecorruptions-imaug), per corruption.

Same images for both (default 64 sample crops at 224x224), the same thread count (default 2), and the
model-only limit measured in the same run (EfficientNet-Lite0 forward, ms/image), so the numbers say
how far corruption is from being free relative to the network. Run:

    python benchmarks/corruption_speed.py [--images 64] [--threads 2] [--severity 3] [--device cpu|cuda]
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch: huge pages for the CPU allocator (main.py)

import argparse
import math
import time

import numpy as np
import torch

from _common import reference, sample_crops

import corruptions
from corruptions import apply_corruption, derive_seeds, get_corruption
from robustbench_in.models import ModelSpec, create_model


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up (kernel caches, lazy tables)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--reference-images", type=int, default=16, help="images for the (slow) reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corruptions", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    device = torch.device(args.device)
    crops, _, ids = sample_crops(args.images)
    x = crops.to(device).float().div(255.0)
    names = args.corruptions or [*corruptions.IMAGENET_C, *corruptions.IMAGENET_C_EXTRA]
    model = create_model(ModelSpec(name="efficientnet_lite0")).module.to(device).eval()
    with torch.inference_mode():
        model_ms = timed(lambda: model(x), repeats=2) / len(x) * 1e3
    print(f"{len(x)} images 224x224, severity {args.severity}, {args.threads} threads, device {device}")
    print(f"model-only limit (EfficientNet-Lite0 forward): {model_ms:.2f} ms/image\n")
    print(f"{'corruption':<20}{'ours ms/img':>12}{'ref ms/img':>12}{'speed-up':>10}{'ours/model':>12}")
    ratios = []
    ref_imgs = [c.permute(1, 2, 0).numpy() for c in crops[: args.reference_images]]
    for name in names:
        c = get_corruption(name)
        seeds = derive_seeds(0, ids, name, args.severity).to(device)
        ours = timed(lambda: apply_corruption(c, x, args.severity, seeds), repeats=2) / len(x) * 1e3
        ref = timed(lambda: [reference(name, im, args.severity, i, original=False) for i, im in enumerate(ref_imgs)]) \
            / len(ref_imgs) * 1e3
        ratios.append(ref / ours)
        print(f"{name:<20}{ours:>12.2f}{ref:>12.2f}{ref / ours:>9.1f}x{ours / model_ms:>11.2f}x")
    gm = math.exp(np.mean(np.log(ratios)))
    print(f"\ngeometric-mean speed-up over the reference: {gm:.1f}x; slowest relative: "
          f"{names[int(np.argmin(ratios))]} ({min(ratios):.2f}x)")


if __name__ == "__main__":
    main()
