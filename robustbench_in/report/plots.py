"""Paper figures from result tables: error vs severity, degradation heatmap, mCE bars, effective robustness.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global backend switch, no
GUI), each saved as PNG (300 dpi) and PDF (TrueType fonts embedded, no timestamp). One style for all of them,
sized for a single column (3.3 in) or a full page width (7 in) so that 7 pt text stays 7 pt in the paper.
Inputs are the report's DataFrames (cells as in results.csv, and the summary); nothing here reads the engine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from robustbench_in.report.alexnet import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS

# matplotlib's PDF backend subsets fonts through fontTools, which logs every table at INFO; Hydra's logging
# setup would print them all
logging.getLogger("fontTools").setLevel(logging.WARNING)

SINGLE_COLUMN_IN = 3.3
DOUBLE_COLUMN_IN = 7.0
CLEAN = "clean"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7,
    "xtick.labelsize": 6, "ytick.labelsize": 6, "legend.fontsize": 6,
    "axes.linewidth": 0.6, "lines.linewidth": 1.1, "lines.markersize": 3,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.5,
    "legend.frameon": False,
    "savefig.dpi": 300, "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42, "ps.fonttype": 42,
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


def model_styles(models: Sequence[str]) -> dict[str, dict]:
    """The same colour and marker for a model in every figure (sorted names -> tab10, then new markers)."""
    cmap = matplotlib.colormaps["tab10"]
    return {m: {"color": cmap(i % 10), "marker": _MARKERS[(i // 10 + i) % len(_MARKERS)]}
            for i, m in enumerate(sorted(models))}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    fig.savefig(png, format="png", metadata={"Software": None})
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None})
    return [png, pdf]


def corruption_order(names) -> list[str]:
    """Paper order for ImageNet-C names, then the extras, then any other corruption alphabetically."""
    names = [n for n in dict.fromkeys(names) if n != CLEAN]
    known = [n for n in (*BENCHMARK_CORRUPTIONS, *EXTRA_CORRUPTIONS) if n in names]
    return known + sorted(n for n in names if n not in known)


def _label(name: str) -> str:
    return name.replace("_", " ")


def _clean_errors(df: pd.DataFrame, column: str = "top1_err") -> dict[str, float]:
    clean = df[df["corruption"] == CLEAN]
    return {m: float(g[column].iloc[0]) for m, g in clean.groupby("model")}


# ------------------------------------------------------------------------------------------------ figures


def plot_error_vs_severity(df: pd.DataFrame, stem: Path, metric: str = "top1") -> list[Path]:
    """One panel per corruption, one line per model with its 95 % CI band, the clean error dashed."""
    corr = df[df["corruption"] != CLEAN]
    names = corruption_order(corr["corruption"])
    if not names:
        return []
    styles = model_styles(df["model"].unique())
    clean = _clean_errors(df, f"{metric}_err")
    ncols = min(5, len(names))
    nrows = math.ceil(len(names) / ncols)
    width = DOUBLE_COLUMN_IN if ncols > 2 else SINGLE_COLUMN_IN
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(width, 0.45 + 1.25 * nrows)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
        severities = sorted(corr["severity"].unique())
        for ax, name in zip(axes, names):
            cell = corr[corr["corruption"] == name]
            for model, st in styles.items():
                g = cell[cell["model"] == model].sort_values("severity")
                if g.empty:
                    continue
                x = g["severity"].to_numpy()
                ax.plot(x, 100 * g[f"{metric}_err"], color=st["color"], marker=st["marker"], zorder=3)
                lo, hi = g[f"{metric}_ci_low"].to_numpy(float), g[f"{metric}_ci_high"].to_numpy(float)
                if np.isfinite(lo).all() and np.isfinite(hi).all():
                    ax.fill_between(x, 100 * lo, 100 * hi, color=st["color"], alpha=0.18, lw=0, zorder=2)
                if model in clean and np.isfinite(clean[model]):
                    ax.axhline(100 * clean[model], color=st["color"], ls="--", lw=0.8, zorder=1)
            ax.set_title(_label(name))
            ax.set_xticks(severities)
            ax.set_ylim(0, 100)
        for ax in axes[len(names):]:
            ax.set_visible(False)
        for i, ax in enumerate(axes[: len(names)]):
            if i % ncols == 0:
                ax.set_ylabel(f"Top-{metric[-1]} error (%)")
            if i >= len(names) - ncols:
                ax.set_xlabel("Severity")
                ax.xaxis.set_tick_params(labelbottom=True)
        handles = [Line2D([], [], color=st["color"], marker=st["marker"], label=m) for m, st in styles.items()]
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label="clean"))
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 5))
        return _save(fig, stem)


def degradation_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """models x corruptions: (mean top-1 error over severities - clean error) / clean error."""
    clean = _clean_errors(df)
    corr = df[df["corruption"] != CLEAN]
    mean = corr.groupby(["model", "corruption"])["top1_err"].mean().unstack("corruption")
    mean = mean.reindex(columns=corruption_order(mean.columns), index=sorted(mean.index))
    base = pd.Series({m: clean.get(m, np.nan) for m in mean.index}, dtype=float)
    base = base.where(base > 0)
    return mean.sub(base, axis=0).div(base, axis=0)


def plot_degradation_heatmap(df: pd.DataFrame, stem: Path) -> list[Path]:
    """Model x corruption heatmap of the relative increase of top-1 error over clean (0 = unaffected)."""
    rel = degradation_matrix(df)
    if rel.empty:
        return []
    values = rel.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    vmax = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
    n_models, n_corr = values.shape
    width = DOUBLE_COLUMN_IN if n_corr > 6 else SINGLE_COLUMN_IN
    height = 0.9 + 0.22 * n_models + 0.5
    if finite.size and finite.min() < 0:  # some corruption helps: diverging around 0
        cmap, norm = matplotlib.colormaps["RdBu_r"], TwoSlopeNorm(0.0, -vmax, vmax)
    else:
        cmap, norm = matplotlib.colormaps["Reds"], Normalize(0.0, vmax)
    cmap = cmap.with_extremes(bad="0.85")
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = _new_figure(width, height)
        ax = fig.add_subplot()
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(n_corr), [_label(c) for c in rel.columns], rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(range(n_models), list(rel.index))
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        if n_models * n_corr <= 200:
            for i in range(n_models):
                for j in range(n_corr):
                    v = values[i, j]
                    text = "n/a" if not np.isfinite(v) else f"{100 * v:+.0f}%"
                    dark = np.isfinite(v) and abs(v) > 0.6 * vmax
                    ax.text(j, i, text, ha="center", va="center", fontsize=5,
                            color="white" if dark else "0.15")
        cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.02)
        cb.set_label("Top-1 error increase\nrelative to clean")
        cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        cb.outline.set_linewidth(0.4)
        return _save(fig, stem)


def _mce_choice(summary: pd.DataFrame) -> tuple[str, str] | None:
    """Which mCE to plot: AlexNet-normalised if every model has it, else vs baseline, else unnormalised."""
    def complete(col):
        return col in summary and np.isfinite(summary[col].to_numpy(dtype=float)).all()

    n = int(summary["n_images"].max())
    if complete("mCE"):
        note = "" if summary.get("mCE_comparable", pd.Series([False])).all() else f"; n = {n}, not comparable"
        return "mCE", f"mCE (%, AlexNet-normalised{note})"
    if complete("baseline_mCE"):
        return "baseline_mCE", f"mCE relative to {summary['baseline'].iloc[0]} (%)"
    if complete("unnormalised_mCE"):
        return "unnormalised_mCE", "Mean corruption error (%, unnormalised)"
    return None


def plot_mce_bar(summary: pd.DataFrame, stem: Path) -> list[Path]:
    """Horizontal bars, best model on top, with the value printed at each bar's end."""
    choice = _mce_choice(summary)
    if choice is None:
        return []
    col, label = choice
    styles = model_styles(summary["model"].unique())
    s = summary.sort_values(col, ascending=False)
    vals = 100 * s[col].to_numpy(dtype=float)
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        fig = _new_figure(SINGLE_COLUMN_IN, 0.6 + 0.25 * len(s))
        ax = fig.add_subplot()
        y = np.arange(len(s))
        ax.barh(y, vals, color=[styles[m]["color"] for m in s["model"]], height=0.65)
        ax.set_yticks(y, list(s["model"]))
        for yi, v in zip(y, vals):
            ax.text(v, yi, f" {v:.1f}", va="center", ha="left", fontsize=6)
        ax.set_xlim(0, max(vals.max() * 1.15, 1.0))
        ax.set_xlabel(label)
        ax.xaxis.grid(True)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
        return _save(fig, stem)


def plot_effective_robustness(summary: pd.DataFrame, stem: Path) -> list[Path]:
    """Clean vs mean corrupted top-1 accuracy per model, with the linear fit across models (>= 2 models).

    Points sit below y = x; a model above the fit is more robust than its clean accuracy predicts (effective
    robustness, Taori et al. 2020, here with a plain linear fit). Models are told apart by the legend.
    """
    s = summary[np.isfinite(summary["clean_top1_err"].to_numpy(float))
                & np.isfinite(summary["corr_top1_err"].to_numpy(float))]
    if s.empty:
        return []
    styles = model_styles(summary["model"].unique())
    x = 100 * (1 - s["clean_top1_err"].to_numpy(float))
    y = 100 * (1 - s["corr_top1_err"].to_numpy(float))
    lo = max(0.0, min(x.min(), y.min()) - 5)
    hi = min(100.0, max(x.max(), y.max()) + 5)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(SINGLE_COLUMN_IN, 2.8)
        ax = fig.add_subplot()
        ax.plot([lo, hi], [lo, hi], color="0.6", ls=":", lw=0.8, label="y = x")
        if len(s) >= 2 and np.ptp(x) > 0:
            slope, icept = np.polyfit(x, y, 1)
            xs = np.array([lo, hi])
            ax.plot(xs, slope * xs + icept, color="0.2", lw=0.9,
                    label=f"linear fit: y = {slope:.2f}x {'+' if icept >= 0 else '-'} {abs(icept):.1f}")
        for xi, yi, m in zip(x, y, s["model"]):
            st = styles[m]
            ax.scatter([xi], [yi], color=st["color"], marker=st["marker"], s=18, zorder=3, label=m)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("Clean top-1 accuracy (%)")
        ax.set_ylabel("Mean corrupted top-1 accuracy (%)")
        ax.legend(loc="upper left")
        return _save(fig, stem)


# --------------------------------------------------------------------------------------------- all plots


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(s))


def make_all(df: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Every figure for every dataset into ``out_dir``; {"<figure>[_<dataset>]_<png|pdf>": path}."""
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    datasets = sorted(df["dataset"].unique())
    for ds in datasets:
        suffix = f"_{_slug(ds)}" if len(datasets) > 1 else ""
        d, s = df[df["dataset"] == ds], summary[summary["dataset"] == ds]
        for name, paths in (
            ("error_vs_severity", plot_error_vs_severity(d, out_dir / f"error_vs_severity{suffix}")),
            ("degradation_heatmap", plot_degradation_heatmap(d, out_dir / f"degradation_heatmap{suffix}")),
            ("mce_bar", plot_mce_bar(s, out_dir / f"mce_bar{suffix}")),
            ("effective_robustness", plot_effective_robustness(s, out_dir / f"effective_robustness{suffix}")),
        ):
            for p in paths:
                written[f"{name}{suffix}_{p.suffix[1:]}"] = p
    return written
