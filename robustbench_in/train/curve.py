"""The training curve: one row per epoch in ``curve.csv`` and a two-panel ``curve.png`` (loss; held-out errors)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robustbench_in.files import atomic_write

CURVE_COLUMNS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_top1_err", "val_top5_err", "n_val",
                 "seconds", "images_per_s"]


def write_curve(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    frame = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    csv = atomic_write(out_dir / "curve.csv", lambda p: frame.to_csv(p, index=False))
    return csv, atomic_write(out_dir / "curve.png", lambda p: _plot(frame, p))


def _plot(frame: pd.DataFrame, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    loss, err = fig.subplots(1, 2)
    loss.plot(frame["epoch"], frame["train_loss"], "o-", label="train")
    loss.plot(frame["epoch"], frame["val_loss"], "s--", label="held-out")
    loss.set(xlabel="epoch", ylabel="loss", title="loss")
    err.plot(frame["epoch"], 100 * frame["val_top1_err"], "o-", label="top-1")
    err.plot(frame["epoch"], 100 * frame["val_top5_err"], "s--", label="top-5")
    err.set(xlabel="epoch", ylabel="error (%)", title="held-out clean error")
    for ax in (loss, err):
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
