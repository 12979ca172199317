"""The summary as text: two LaTeX (booktabs) tables for a paper and the same tables, plus the per-corruption
errors, as GitHub Markdown; and the distribution-shift table (accuracy per shift set, effective robustness).

Only formatting lives here (percent, CIs in brackets, the best value per column in bold, escaping), so the
numbers are those of ``summary`` whatever the output. Errors are fractions in the DataFrames and printed as
percent; NLL is printed as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustbench_in.report.alexnet import ALEXNET_SOURCE

ALEXNET_NOTE = (
    "CE/mCE/relative mCE are normalised by AlexNet's published ImageNet-C top-1 errors "
    f"({ALEXNET_SOURCE}); they are only meaningful on the full 50,000-image ImageNet validation set "
    "with all 5 severities of the 15 benchmark corruptions, and are left empty otherwise."
)


def _pct(x: float, digits: int = 1) -> str:
    return "" if x is None or not np.isfinite(x) else f"{100.0 * x:.{digits}f}"


def _latex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
           "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(rep.get(ch, ch) for ch in str(s))


# (column, header, lower-is-better) of the two summary tables
def _main_columns(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    cols = [("clean_top1_err", "Clean top-1", True), ("clean_top5_err", "Clean top-5", True),
            ("corr_top1_err", "Corr. top-1", True), ("corr_top5_err", "Corr. top-5", True),
            ("top5_degradation_abs", "Δ top-5", True), ("top5_degradation_rel", "Δ top-5 rel.", True),
            ("mCE", "mCE†", True), ("relative_mCE", "Rel. mCE†", True),
            ("unnormalised_mCE", "Unnorm. mCE", True)]
    if "baseline_mCE" in summary:
        cols.append(("baseline_mCE", f"mCE vs {summary['baseline'].iloc[0]}", True))
    return cols


def _category_columns(summary: pd.DataFrame) -> list[tuple[str, str, bool]]:
    cats = [c[len("top1_err_"):] for c in summary.columns if c.startswith("top1_err_")]
    return ([(f"top1_err_{c}", c.capitalize(), True) for c in cats]
            + [("clean_ece", "ECE clean", True), ("corr_ece", "ECE corr.", True),
               ("clean_nll", "NLL clean", True), ("corr_nll", "NLL corr.", True)])


_CI_OF = {"clean_top1_err": "clean_top1", "clean_top5_err": "clean_top5",
          "corr_top1_err": "corr_top1", "corr_top5_err": "corr_top5"}
_NOT_PERCENT = {"clean_nll", "corr_nll"}


def _cell_text(row, col: str, ci: bool, latex: bool) -> str:
    v = row.get(col, math.nan)
    if v is None or not np.isfinite(v):
        return "--" if latex else "–"
    text = f"{v:.3f}" if col in _NOT_PERCENT else _pct(v)
    if col in ("top5_degradation_abs",) and v > 0:
        text = "+" + text
    if ci and col in _CI_OF:
        lo, hi = row.get(_CI_OF[col] + "_ci_low"), row.get(_CI_OF[col] + "_ci_high")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            text += (rf" {{\scriptsize[{_pct(lo)}, {_pct(hi)}]}}" if latex else f" [{_pct(lo)}, {_pct(hi)}]")
    return text


def _table_cells(summary: pd.DataFrame, columns, ci: bool, latex: bool) -> tuple[list[str], list[list[str]]]:
    multi = summary["dataset"].nunique() > 1
    header = (["Dataset"] if multi else []) + ["Model"] + [h for _, h, _ in columns]
    body = []
    best: dict[tuple[str, str], float] = {}
    for col, _, lower in columns:
        for ds, g in summary.groupby("dataset"):
            vals = g[col].to_numpy(dtype=float) if col in g else np.array([])
            vals = vals[np.isfinite(vals)]
            if len(g) >= 2 and vals.size >= 2:
                best[(ds, col)] = vals.min() if lower else vals.max()
    for _, row in summary.iterrows():
        cells = ([_latex_escape(row["dataset"]) if latex else str(row["dataset"])] if multi else [])
        cells.append(_latex_escape(row["model"]) if latex else str(row["model"]))
        for col, _, _ in columns:
            text = _cell_text(row, col, ci, latex)
            b = best.get((row["dataset"], col))
            if b is not None and np.isfinite(row.get(col, math.nan)) and row[col] == b:
                text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
            cells.append(text)
        body.append(cells)
    return header, body


def _footnote(summary: pd.DataFrame) -> str:
    n = ", ".join(f"{ds}: n = {int(g['n_images'].max())}" for ds, g in summary.groupby("dataset"))
    txt = (f"Errors in %, 95 % CIs in brackets (Wilson for clean, bootstrap over images for the corrupted "
           f"mean); {n}. † {ALEXNET_NOTE}")
    if "baseline_coverage" in summary:
        txt += " mCE vs baseline: sum of top-1 errors over the severities both models share, per corruption."
    return txt


def to_latex(summary: pd.DataFrame, label: str = "tab:robustness") -> str:
    """Two booktabs tables (headline numbers; per-category errors and calibration), one row per model."""
    parts = ["% Requires \\usepackage{booktabs}. Generated by robustbench_in.report."]
    for suffix, columns, caption in (
        ("", _main_columns(summary), "Robustness summary. " + _footnote(summary)),
        ("-categories", _category_columns(summary),
         "Mean corrupted top-1 error per category (%), expected calibration error (%, 15 bins) and "
         "negative log-likelihood."),
    ):
        header, body = _table_cells(summary, columns, ci=not suffix, latex=True)
        header = [_latex_escape(h).replace("Δ", r"$\Delta$").replace("†", r"$^\dagger$") for h in header]
        n_text = len(header) - len(columns)
        caption_tex = _latex_escape(caption).replace("†", r"$^\dagger$")
        lines = [r"\begin{table*}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
                 rf"\caption{{{caption_tex}}}",
                 rf"\label{{{label}{suffix}}}",
                 r"\begin{tabular}{" + "l" * n_text + "r" * len(columns) + "}", r"\toprule",
                 " & ".join(header) + r" \\", r"\midrule"]
        lines += [" & ".join(r) + r" \\" for r in body]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown would need the optional ``tabulate``)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = [":---" if a == "l" else "---:" for a in align]
    esc = [[str(c).replace("|", r"\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(r) + " |" for r in [esc[0], rule, *esc[1:]]]
    return "\n".join(lines) + "\n"


def to_markdown(summary: pd.DataFrame, corruptions: pd.DataFrame | None = None) -> str:
    """The two summary tables, and the per-corruption mean top-1 errors, as Markdown."""
    out = ["## Robustness summary", ""]
    header, body = _table_cells(summary, _main_columns(summary), ci=True, latex=False)
    out += [markdown_table(header, body, "l" * (len(header) - len(_main_columns(summary)))
                           + "r" * len(_main_columns(summary))), _footnote(summary), ""]
    cols = _category_columns(summary)
    header, body = _table_cells(summary, cols, ci=False, latex=False)
    out += ["## Per category and calibration", "",
            markdown_table(header, body, "l" * (len(header) - len(cols)) + "r" * len(cols)),
            "Mean corrupted top-1 error per category (%), ECE (%, 15 bins), NLL (nats).", ""]
    if corruptions is not None and len(corruptions):
        out += ["## Mean top-1 error per corruption (%)", ""]
        for ds, g in corruptions.groupby("dataset", sort=True):
            names = list(dict.fromkeys(g["corruption"]))
            piv = g.pivot(index="model", columns="corruption", values="top1_err")
            rows = [[m] + [_pct(piv.at[m, c]) or "–" for c in names] for m in piv.index]
            if corruptions["dataset"].nunique() > 1:
                out += [f"### {ds}", ""]
            out += [markdown_table(["Model", *names], rows), ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------- distribution shifts

SHIFT_LABELS = {"imagenet_v2": "IN-V2", "imagenet_sketch": "IN-Sketch", "imagenet_r": "IN-R", "imagenet_a": "IN-A",
                "objectnet": "ObjectNet", "imagenet_c": "IN-C", "imagenet_c_folder": "IN-C (files)"}
ER_NOTE = ("Effective robustness (Taori et al., NeurIPS 2020): over the models of this report, "
           "logit(acc_S) = a·logit(acc_IN) + b is fitted by least squares (accuracies clipped to [1e-4, 1 - 1e-4]); "
           "ER_S = acc_S - sigmoid(a·logit(acc_IN) + b), in points. Intervals: 95 % percentile bootstrap over the "
           "images of both sets (shared by all models), refitting the line in every replicate.")


def shift_label(fit) -> str:
    """A shift set's column label: the paper's short name, with the protocol when it is the class subset."""
    name, dataset = str(fit["shift_set"]), str(fit["dataset"])
    label = SHIFT_LABELS.get(name) or SHIFT_LABELS.get(dataset, dataset)
    return label + (" (subset)" if fit.get("protocol") == "subset" else "")


def _shift_spec(report) -> list[tuple[str, str, str]]:
    """(kind, column prefix, header) of the shifts table: accuracies, ImageNet-C mCEs, then ER per set."""
    fits = list(report.fits.to_dict("records"))
    spec = [("acc", "clean", f"IN ({report.reference})")]
    spec += [("acc", f["shift_set"], shift_label(f)) for f in fits]
    for f in fits:
        kind_col = f"{f['shift_set']}_mCE_kind"
        if kind_col in report.table:
            alexnet = (report.table[kind_col] == "alexnet").all()
            spec.append(("mce", f["shift_set"], f"{shift_label(f)} {'mCE†' if alexnet else 'unnorm. mCE'}"))
    spec += [("er", f["shift_set"], f"ER {shift_label(f)}") for f in fits]
    return spec


def _signed(x: float) -> str:
    return f"{100.0 * x:+.1f}"


def _shift_cell(row, kind: str, prefix: str, latex: bool) -> str:
    """One cell: accuracy or ER in % with its interval in brackets, or the mCE; a dash where there is none."""
    dash = "--" if latex else "–"
    if kind == "mce":
        return _pct(row.get(f"{prefix}_mCE", math.nan)) or dash
    if kind == "acc":
        col, ci, fmt = f"{prefix}_top1_acc", f"{prefix}_top1_ci", _pct
    else:
        col, ci, fmt = f"{prefix}_ER", f"{prefix}_ER_ci", _signed
    v = row.get(col, math.nan)
    if v is None or not np.isfinite(v):
        return dash
    lo, hi = row.get(f"{ci}_low"), row.get(f"{ci}_high")
    text = fmt(v)
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        text += rf" {{\scriptsize[{fmt(lo)}, {fmt(hi)}]}}" if latex else f" [{fmt(lo)}, {fmt(hi)}]"
    return text.replace("-", "$-$") if latex and kind == "er" else text


def _fit_lines(report) -> list[str]:
    """One line per shift set: the fitted a and b with their bootstrap intervals, over how many models."""
    lines = []
    for f in report.fits.to_dict("records"):
        if not np.isfinite(f["slope"]):
            continue
        ci = ""
        if np.isfinite(f["slope_ci_low"]):
            ci = (f" (a in [{f['slope_ci_low']:.2f}, {f['slope_ci_high']:.2f}], "
                  f"b in [{f['intercept_ci_low']:.2f}, {f['intercept_ci_high']:.2f}])")
        lines.append(f"{shift_label(f)}: logit(acc) = {f['slope']:.3f}·logit(acc_IN) "
                     f"{'+' if f['intercept'] >= 0 else '-'} {abs(f['intercept']):.3f}{ci}, {f['n_models']} models, "
                     f"{f['n_cells']} cell(s)")
    return lines


def shifts_markdown(report) -> str:
    """The "Distribution shifts" section of summary.md: the table, the fits, and the notes ("" when nothing)."""
    if report.table.empty and not report.notes:
        return ""
    out = ["", "## Distribution shifts", ""]
    if not report.table.empty:
        spec = _shift_spec(report)
        rows = [[str(r["model"])] + [_shift_cell(r, k, p, latex=False) for k, p, _ in spec]
                for r in report.table.to_dict("records")]
        notes = [f"n_boot = {report.n_boot}, seed = {report.seed}."]
        if any(h.endswith("unnorm. mCE") for _, _, h in spec):
            notes.append("unnorm. mCE: mean top-1 error over corruptions without AlexNet normalisation (not an mCE).")
        if any(h.endswith("†") for _, _, h in spec):
            notes.append("† " + ALEXNET_NOTE)
        out += [markdown_table(["Model", *[h for _, _, h in spec]], rows),
                "Top-1 accuracy (%) with 95 % CIs (Wilson for one cell, bootstrap over images for the ImageNet-C "
                "mean); ER in points. " + ER_NOTE + " " + " ".join(notes), ""]
        out += [f"- {line}" for line in _fit_lines(report)]
    out += [f"- {note}" for note in report.notes]
    return "\n".join(out) + "\n"


def shifts_latex(report, label: str = "tab:shifts") -> str:
    """The shifts table as one booktabs table* (same style as summary.tex)."""
    spec = _shift_spec(report)
    header = ["Model"] + [_latex_escape(h).replace("†", r"$^\dagger$") for _, _, h in spec]
    body = [[_latex_escape(r["model"])] + [_shift_cell(r, k, p, latex=True) for k, p, _ in spec]
            for r in report.table.to_dict("records")]
    caption = _latex_escape("Accuracy under distribution shift: top-1 accuracy (%, 95 % CIs in brackets), "
                            "ImageNet-C mCE and effective robustness (ER, points). " + ER_NOTE)
    caption = caption.replace("·", r"$\cdot$").replace("†", r"$^\dagger$")
    if any(h.endswith("†") for _, _, h in spec):
        caption += " $^\\dagger$ " + _latex_escape(ALEXNET_NOTE)
    lines = ["% Requires \\usepackage{booktabs}. Generated by robustbench_in.report.",
             r"\begin{table*}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{l" + "r" * len(spec) + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
    return "\n".join(lines) + "\n"
