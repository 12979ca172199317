"""The shipped recipe, measured on classes it never saw: conf/train/robust_finetune.yaml on EfficientNet-Lite0.

The shared samples (one image per even class index) are split by class: training on class index = 0 mod 4
(250 images), evaluation on class index = 2 mod 4 (250 other images of other classes). The recipe fine-tunes the
bundled Lite0 on the training half; both the starting model and the checkpoint are then evaluated on the other
half, clean and under gaussian, shot and impulse noise at severity 3 (suite=imagenet_c, faithful JPEG), all through
main.py as a user would run them. Prints the table that docs/training.md quotes.

    python benchmarks/robust_finetune.py [--out DIR] [--checkpoint last.pt] [train.epochs=... other overrides]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import REPO, sample_root

from robustbench_in.data import imagenet_classes

NOISE = ["gaussian_noise", "shot_noise", "impulse_noise"]


def split_by_class(root: Path, out: Path) -> tuple[Path, Path]:
    """out/train (class index = 0 mod 4) and out/eval (= 2 mod 4): symlinks to the sample folders."""
    index = imagenet_classes().index_of
    for part in ("train", "eval"):
        (out / part).mkdir(parents=True, exist_ok=True)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name in index):
        part = {0: "train", 2: "eval"}.get(index[d.name] % 4)
        if part and not (out / part / d.name).exists():
            (out / part / d.name).symlink_to(d.resolve())
    return out / "train", out / "eval"


def main_py(*args: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *args, "runtime.progress=false"], text=True)
    if proc.returncode:
        sys.exit(f"main.py {' '.join(args)} failed with exit code {proc.returncode}")


def evaluate(model_args: list[str], eval_root: Path, out: Path) -> pd.Series:
    main_py(*model_args, f"data.root={eval_root}", "suite=imagenet_c", f"suite.corruptions=[{','.join(NOISE)}]",
            "suite.severities=[3]", f"results_dir={out}")
    rows = pd.read_csv(out / "results.csv").set_index("corruption")
    errors = {"clean": rows.loc["clean", "top1_err"], **{n: rows.loc[n, "top1_err"] for n in NOISE}}
    errors["noise_s3_mean"] = sum(errors[n] for n in NOISE) / len(NOISE)
    return 100 * pd.Series(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="evaluate this checkpoint, do not train")
    args, overrides = parser.parse_known_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="robust_finetune-"))
    train_root, eval_root = split_by_class(sample_root(), out / "split")
    checkpoint = args.checkpoint
    if checkpoint is None:
        start = time.perf_counter()
        main_py("task=train", "model=efficientnet_lite0", "train=robust_finetune", f"data.root={train_root}",
                f"results_dir={out / 'train'}", *overrides)
        print(f"training took {time.perf_counter() - start:.0f} s; curve: {out / 'train' / 'curve.csv'}")
        checkpoint = out / "train" / "checkpoints" / "last.pt"
    table = pd.DataFrame({
        "start (Lite0)": evaluate(["model=efficientnet_lite0"], eval_root, out / "eval_start"),
        "robust_finetune": evaluate(["model=checkpoint", f"model.weights_file={checkpoint}"], eval_root,
                                    out / "eval_finetuned"),
    })
    table["change"] = table["robust_finetune"] - table["start (Lite0)"]
    print(f"top-1 error (%) on the {len(list(eval_root.iterdir()))} images of class index = 2 mod 4 (never trained on):")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
