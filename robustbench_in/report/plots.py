"""Paper figures from result tables: error vs severity, degradation heatmap, mCE bars, effective robustness
(logit axes, one panel per shift set).

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

from robustbench_in.report import metrics, tables
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


_ACC_TICKS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995)


def _logit_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions (logits) between lo and hi at round accuracies, labelled in %: Taori et al.'s axes."""
    acc = [t for t in _ACC_TICKS if lo <= metrics.logit(t) <= hi]
    if len(acc) < 3:  # a narrow range: evenly spaced accuracies instead
        acc = sorted(set(np.round(np.linspace(metrics.sigmoid(lo), metrics.sigmoid(hi), 5)[1:-1], 3)))
    return [float(metrics.logit(t)) for t in acc], [f"{100 * t:g}" for t in acc]


def _er_points(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Per model (x, y, x/y interval ends) in logits for one shift set; rows without both accuracies dropped."""
    cols = {"x": "clean_top1_acc", "x_lo": "clean_top1_ci_low", "x_hi": "clean_top1_ci_high",
            "y": f"{name}_top1_acc", "y_lo": f"{name}_top1_ci_low", "y_hi": f"{name}_top1_ci_high"}
    pts = pd.DataFrame({k: metrics.logit(table[c].to_numpy(float)) for k, c in cols.items()})
    pts["model"] = table["model"].to_numpy()
    return pts[np.isfinite(pts["x"]) & np.isfinite(pts["y"])]


def _er_panel(ax, pts: pd.DataFrame, fit: dict, styles: dict, title: str) -> None:
    """One shift set: models with their CIs, y = x, and the logit-linear fit, on logit axes ticked in %."""
    values = pts[["x", "y", "x_lo", "x_hi", "y_lo", "y_hi"]].to_numpy(float)
    lo, hi = np.nanmin(values) - 0.3, np.nanmax(values) + 0.3
    ax.plot([lo, hi], [lo, hi], color="0.6", ls=":", lw=0.8)
    if np.isfinite(fit["slope"]):
        ax.plot([lo, hi], [fit["slope"] * lo + fit["intercept"], fit["slope"] * hi + fit["intercept"]],
                color="0.2", lw=0.9)
    for p in pts.itertuples(index=False):
        st = styles[p.model]
        xerr = [[p.x - p.x_lo], [p.x_hi - p.x]] if np.isfinite([p.x_lo, p.x_hi]).all() else None
        yerr = [[p.y - p.y_lo], [p.y_hi - p.y]] if np.isfinite([p.y_lo, p.y_hi]).all() else None
        ax.errorbar([p.x], [p.y], xerr=xerr, yerr=yerr, color=st["color"], marker=st["marker"], ms=3.5,
                    elinewidth=0.5, capsize=0, ls="none", zorder=3)
    ticks, labels = _logit_ticks(lo, hi)
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_title(title)


def plot_effective_robustness(shifts, stem: Path) -> list[Path]:
    """Clean ImageNet vs shifted top-1 accuracy per model on logit-scaled axes (ticks in %), one panel per shift
    set, with y = x and the logit-linear fit over models whose vertical distance is the effective robustness
    (Taori et al. 2020). ``shifts`` is ``summary.shift_report``'s result; nothing is drawn without a set."""
    table, fits = shifts.table, shifts.fits
    panels = [(f, _er_points(table, f["shift_set"])) for f in fits.to_dict("records")] if len(table) else []
    panels = [(f, pts) for f, pts in panels if len(pts)]
    if not panels:
        return []
    styles = model_styles(table["model"].unique())
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(SINGLE_COLUMN_IN if ncols == 1 else DOUBLE_COLUMN_IN, 0.6 + 2.3 * nrows)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for i, (ax, (fit, pts)) in enumerate(zip(axes, panels)):
            _er_panel(ax, pts, fit, styles, tables.shift_label(fit))
            ax.set_xlabel(f"Clean top-1 accuracy (%, {shifts.reference})")
            if i % ncols == 0:
                ax.set_ylabel("Shifted top-1 accuracy (%)")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=st["color"], marker=st["marker"], ls="none", label=m)
                   for m, st in styles.items() if m in set().union(*(set(p["model"]) for _, p in panels))]
        handles += [Line2D([], [], color="0.2", lw=0.9, label="logit-linear fit"),
                    Line2D([], [], color="0.6", ls=":", lw=0.8, label="y = x")]
        fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 4))
        return _save(fig, stem)


# --------------------------------------------------------------------------------------------- all plots


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(s))


def make_all(df: pd.DataFrame, summary: pd.DataFrame, out_dir: Path, shifts=None) -> dict[str, Path]:
    """Every figure for every dataset into ``out_dir``, and the effective-robustness figure of ``shifts`` (the
    shift report, across data sets) when given; {"<figure>[_<dataset>]_<png|pdf>": path}."""
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
        ):
            for p in paths:
                written[f"{name}{suffix}_{p.suffix[1:]}"] = p
    if shifts is not None:
        for p in plot_effective_robustness(shifts, out_dir / "effective_robustness"):
            written[f"effective_robustness_{p.suffix[1:]}"] = p
    return written
