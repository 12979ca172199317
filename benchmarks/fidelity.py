"""Fidelity: EfficientNet-Lite0 top-1 error under our corruptions and under the reference, side by side.

For every corruption x severity the same sample crops are corrupted by ours (robustbench_in's batched
torch ops) and by imagecorruptions-imaug (the reference yardstick), both truncated to uint8 like the
ImageNet-C generator, optionally both JPEG-85 round-tripped (--jpeg), and classified by the bundled
EfficientNet-Lite0. Also prints the mean absolute change from clean (ours / reference) and, for the
deterministic corruptions, the PSNR between ours and the reference. Targets: |difference| <= 3 points
per cell and <= 1.5 on average. The reference package's elastic_transform and frost differ from the
original ImageNet-C generator that we follow (spec §3.9, §3.13); for those two the yardstick is the original
algorithm in numpy (``mk224.py``). Run:

    python benchmarks/fidelity.py [--max-images 100] [--corruptions fog snow] [--jpeg]
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch: huge pages for the CPU allocator (main.py)

import argparse
import math

import numpy as np
import torch

from _common import reference, sample_crops, truncate_uint8

import corruptions
from corruptions import apply_corruption, derive_seeds, get_corruption
from robustbench_in.models import ModelSpec, create_model


def top1_err(model, preprocessing, images_u8: torch.Tensor, labels: torch.Tensor) -> float:
    wrong = 0
    with torch.inference_mode():
        for i in range(0, len(images_u8), 50):
            x = preprocessing.normalize(images_u8[i:i + 50].float().div(255.0))
            wrong += int((model(x).argmax(1) != labels[i:i + 50]).sum())
    return wrong / len(images_u8)


def jpeg85(images_u8: torch.Tensor) -> torch.Tensor:
    from corruptions.digital import jpeg_round_trip

    return truncate_uint8(jpeg_round_trip(images_u8.float().div(255.0), 85))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-images", type=int, default=100)
    ap.add_argument("--corruptions", nargs="*", default=None)
    ap.add_argument("--severities", nargs="*", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--jpeg", action="store_true", help="JPEG-85 round trip on both sides (released-file mode)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    entry = create_model(ModelSpec(name="efficientnet_lite0"))
    model, pre = entry.module.eval(), entry.preprocessing
    crops, labels, ids = sample_crops(args.max_images, pre)
    clean = top1_err(model, pre, crops, labels)
    print(f"{len(crops)} sample images; EfficientNet-Lite0 clean top-1 error {100 * clean:.1f}%"
          f"{' (JPEG-85 on both sides)' if args.jpeg else ''}\n")
    print(f"{'corruption':<19}{'sev':>4}{'ours':>7}{'ref':>7}{'diff':>7}{'MAC ours/ref':>14}{'PSNR':>7}")
    diffs = []
    for name in args.corruptions or [*corruptions.IMAGENET_C, *corruptions.IMAGENET_C_EXTRA]:
        c = get_corruption(name)
        for s in args.severities:
            ours = truncate_uint8(apply_corruption(c, crops.float().div(255.0), s, derive_seeds(0, ids, name, s)))
            ref = torch.stack([torch.from_numpy(reference(name, im.permute(1, 2, 0).numpy(), s, int(i)))
                               .permute(2, 0, 1) for im, i in zip(crops, ids)])
            if args.jpeg:
                ours, ref = jpeg85(ours), jpeg85(ref)
            e_ours, e_ref = top1_err(model, pre, ours, labels), top1_err(model, pre, ref, labels)
            mac_o = (ours.float() - crops.float()).abs().mean().item()
            mac_r = (ref.float() - crops.float()).abs().mean().item()
            p = f"{psnr(ours, ref):7.1f}" if not c.random else "      -"
            diffs.append(100 * (e_ours - e_ref))
            print(f"{name:<19}{s:>4}{100 * e_ours:>7.1f}{100 * e_ref:>7.1f}{diffs[-1]:>+7.1f}"
                  f"{mac_o:>7.2f}/{mac_r:<6.2f}{p}", flush=True)
    d = np.abs(diffs)
    print(f"\nmean |diff| {d.mean():.2f} points, max |diff| {d.max():.1f} points over {len(d)} cells "
          f"(targets: mean <= 1.5, every cell <= 3)")


if __name__ == "__main__":
    main()
