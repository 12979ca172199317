"""report.html: the whole report as one file to share with co-authors, opened anywhere, offline.

Every table with its intervals, every figure (the PNGs ``plots.make_all`` wrote, inlined as data URIs), the paired
tests, what was skipped and the provenance, with inline CSS for a laptop screen and for print. No JavaScript and no
network reference, so the file renders the same years later. Cell texts come from the helpers that write
summary.md and summary.tex (``tables``), so the three outputs never show different numbers. Every string that
comes from data (model names, paths, reasons) goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustbench_in.files import atomic_write
from robustbench_in.report import metrics, tables
from robustbench_in.report.plots import corruption_order

HTML_FILE = "report.html"
CLEAN = "clean"
DASH = "–"
#: images listed per results folder; the rest are counted and left to that folder's skipped.csv
MAX_SKIPPED_IMAGES = 200
PROVENANCE = ("versions", "git_commit", "seed", "jpeg_mode", "quantize", "source", "protocol", "backend", "device",
              "preprocessing", "weights", "config_hash", "results_dir")
FIGURE_CAPTIONS = {
    "error_vs_severity": "Top-1 error vs severity, one panel per corruption, 95 % CI bands; dashed: clean error.",
    "degradation_heatmap": "Relative degradation of top-1 error per model and corruption (mean over severities).",
    "mce_bar": "Mean corruption error per model.",
    "effective_robustness": "Clean vs shifted top-1 accuracy on logit axes with the fitted line, one panel per "
                            "shift set (effective robustness).",
}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1b1b;margin:0}
main{max-width:1100px;margin:0 auto;padding:1.5rem 1.25rem 4rem}
h1{font-size:1.6rem;margin:.2rem 0 .4rem}
h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
nav ul{columns:2 16rem;padding-left:1.2rem;margin:.4rem 0}
.scroll{overflow-x:auto;margin:.6rem 0;border:1px solid #e2e2e2;width:fit-content;max-width:100%}
table{border-collapse:collapse;font-size:.85rem;font-variant-numeric:tabular-nums}
th,td{padding:.28rem .55rem;border-bottom:1px solid #eee;white-space:nowrap;text-align:right;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
.t{text-align:left}
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:12rem;max-width:28rem}
tbody tr:nth-child(even){background:#fafafa}
.note{color:#555;font-size:.85em}
figure{margin:1.4rem 0;text-align:center}
figure img{max-width:100%;height:auto}
figcaption{font-size:.85rem;color:#444;margin-top:.3rem}
code{font-size:.85em;overflow-wrap:anywhere}
@media print{
  @page{margin:1.4cm}
  body{font-size:10pt}
  main{max-width:none;padding:0}
  nav{display:none}
  .scroll{overflow:visible;border:0}
  table{font-size:7.5pt}
  th,td{white-space:normal;padding:1px 4px}
  table,figure,tr{break-inside:avoid;page-break-inside:avoid}
  h2,h3{break-after:avoid;page-break-after:avoid}
  figure img{max-height:23cm;object-fit:contain}
}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or str(v) in ("", "nan")


def _text(v) -> str:
    return DASH if _is_missing(v) else str(v)


def _cell(text: str, numeric: bool, key: str | None) -> str:
    """One <td>: escaped, Markdown's **best** as <strong>, and the summary column it shows as data-col."""
    text = str(text)
    bold = numeric and len(text) > 4 and text.startswith("**") and text.endswith("**")
    inner = _esc(text[2:-2] if bold else text)
    inner = f"<strong>{inner}</strong>" if bold else inner
    cls = "" if numeric else ' class="t wrap"' if len(text) > 40 else ' class="t"'
    col = f' data-col="{_esc(key)}"' if key else ""
    return f"<td{cls}{col}>{inner}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence], n_text: int = 1, table_id: str = "",
           keys: Sequence[str | None] | None = None, n_text_last: int = 0) -> str:
    """A table in a box that scrolls sideways when wide; the first ``n_text`` and last ``n_text_last`` columns
    are text (left-aligned, wrapping when long), the others numbers."""
    keys = list(keys) if keys is not None else [None] * len(header)
    text = [i < n_text or i >= len(header) - n_text_last for i in range(len(header))]
    head = "".join(f'<th{" class=t" if text[i] else ""} scope="col">{_esc(h)}</th>' for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(_cell(c, not text[i], keys[i]) for i, c in enumerate(r)) + "</tr>"
                     for r in rows)
    tid = f' id="{_esc(table_id)}"' if table_id else ""
    return f'<div class="scroll"><table{tid}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _section(anchor: str, title: str, parts: Sequence[str]) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}">\n<h2>{_esc(title)}</h2>\n' + "\n".join(parts) + "\n</section>"


# ------------------------------------------------------------------------------------------ summary tables


def _summary_table(summary: pd.DataFrame, columns, ci: bool, table_id: str = "") -> str:
    """The rows of summary.md's table, cell for cell, with data-col naming the summary.csv column."""
    header, body = tables._table_cells(summary, columns, ci=ci, latex=False)
    n_text = len(header) - len(columns)
    keys = [None] * n_text + [c for c, _, _ in columns]
    return _table(header, body, n_text, table_id, keys)


def _signed_pct(v: float) -> str:
    return DASH if v is None or not np.isfinite(v) else ("+" if v > 0 else "") + tables._pct(v)


def _degradation_rows(summary: pd.DataFrame, multi: bool) -> list[list[str]]:
    """Clean and mean corrupted top-1/top-5 with absolute (points) and relative (%) degradation per model."""
    rows = []
    for r in summary.to_dict("records"):
        cells = ([str(r["dataset"])] if multi else []) + [str(r["model"])]
        for k in ("top1", "top5"):
            clean, corr = r.get(f"clean_{k}_err", math.nan), r.get(f"corr_{k}_err", math.nan)
            delta = corr - clean
            rel = delta / clean if np.isfinite(delta) and clean else math.nan
            cells += [tables._pct(clean) or DASH, tables._pct(corr) or DASH, _signed_pct(delta), _signed_pct(rel)]
        rows.append(cells)
    return rows


def _mce_table(summary: pd.DataFrame) -> str:
    """The mCE columns of the summary with the coverage that says why an mCE is empty."""
    mce_cols = [c for c in tables._main_columns(summary) if "mCE" in c[0]]
    header, body = tables._table_cells(summary, mce_cols, ci=False, latex=False)
    n_text = len(header) - len(mce_cols)
    extra = [(c, h) for c, h in (("mCE_coverage", "AlexNet mCE coverage"), ("baseline_coverage", "Baseline coverage"))
             if c in summary]
    for row, r in zip(body, summary.to_dict("records")):
        row += [_text(r[c]) for c, _ in extra]
    keys = [None] * n_text + [c for c, _, _ in mce_cols] + [None] * len(extra)
    return _table(header + [h for _, h in extra], body, n_text, "mce-table", keys, n_text_last=len(extra))


def _summary_sections(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Summary with CIs; clean vs corrupted and the degradation; mCE where it applies; categories and calibration."""
    multi = summary["dataset"].nunique() > 1
    lead = (["Dataset"] if multi else []) + ["Model"]
    degr = _table(lead + ["Clean top-1", "Corr. top-1", "Δ top-1", "Δ top-1 rel.",
                          "Clean top-5", "Corr. top-5", "Δ top-5", "Δ top-5 rel."],
                  _degradation_rows(summary, multi), len(lead), "degradation-table")
    applies = "mCE" in summary and np.isfinite(summary["mCE"].to_numpy(dtype=float)).any()
    mce_note = ("" if applies else "AlexNet-normalised mCE does not apply to these results (see coverage). ") + (
        "† " + tables.ALEXNET_NOTE + " Unnorm. mCE: mean top-1 error over corruptions, in %.")
    return [
        _section("summary", "Robustness summary", [
            _summary_table(summary, tables._main_columns(summary), ci=True, table_id="summary-table"),
            _note(tables._footnote(summary) + " Best value per column in bold.")]),
        _section("degradation", "Clean vs corrupted", [
            degr, _note("Errors in %; Δ: mean corrupted minus clean error, in points; rel.: Δ / clean, in %.")]),
        _section("mce", "Mean corruption error", [_mce_table(summary), _note(mce_note)]),
        _section("categories", "Per category and calibration", [
            _summary_table(summary, tables._category_columns(summary), ci=False),
            _note("Mean corrupted top-1 error per category (%), ECE (%, 15 bins), NLL (nats).")]),
    ]


# --------------------------------------------------------------------------------- corruptions, severities


def _pivot_table(g: pd.DataFrame, value: str, fmt) -> str:
    names = corruption_order(g["corruption"])
    piv = g.pivot_table(index="model", columns="corruption", values=value, aggfunc="first", dropna=False)
    rows = [[m] + [fmt(piv.at[m, c]) if c in piv.columns else DASH for c in names] for m in piv.index]
    return _table(["Model", *[n.replace("_", " ") for n in names]], rows)


def _per_corruption(per_corruption: pd.DataFrame) -> list[str]:
    """Per dataset: mean top-1 and top-5 error per corruption, and the AlexNet CE where there is one."""
    parts: list[str] = []
    if per_corruption is None or per_corruption.empty:
        return [_note("No corrupted cells in these results.")]
    multi = per_corruption["dataset"].nunique() > 1
    for ds, g in per_corruption.groupby("dataset", sort=True):
        if multi:
            parts.append(f"<h3>{_esc(ds)}</h3>")
        parts += ["<h3>Mean top-1 error (%)</h3>", _pivot_table(g, "top1_err", lambda v: tables._pct(v) or DASH),
                  "<h3>Mean top-5 error (%)</h3>", _pivot_table(g, "top5_err", lambda v: tables._pct(v) or DASH)]
        for col, title in (("CE", "Corruption error (CE†, %)"), ("relative_CE", "Relative CE† (%)"),
                           ("baseline_CE", "CE vs baseline (%)")):
            if col in g and np.isfinite(g[col].to_numpy(dtype=float)).any():
                parts += [f"<h3>{_esc(title)}</h3>", _pivot_table(g, col, lambda v: tables._pct(v) or DASH)]
    parts.append(_note("Means over the severities evaluated (listed in corruption_errors.csv). † "
                       + tables.ALEXNET_NOTE))
    return parts


def _severity_rows(g: pd.DataFrame, metric: str, ci: bool) -> tuple[list[str], list[list[str]]]:
    """Rows (model, corruption) with the clean error, then the error at each severity."""
    severities = sorted(int(s) for s in g.loc[g["corruption"] != CLEAN, "severity"].unique())

    def fmt(r) -> str:
        text = tables._pct(r[f"{metric}_err"]) or DASH
        lo, hi = r.get(f"{metric}_ci_low", math.nan), r.get(f"{metric}_ci_high", math.nan)
        ok = ci and text != DASH and np.isfinite(float(lo)) and np.isfinite(float(hi))
        return text + (f" [{tables._pct(lo)}, {tables._pct(hi)}]" if ok else "")

    rows = []
    for model, m in g.groupby("model", sort=True):
        clean = m[m["corruption"] == CLEAN]
        clean_text = fmt(clean.iloc[0]) if len(clean) else DASH
        corr = m[m["corruption"] != CLEAN]
        for name in corruption_order(corr["corruption"]):
            cells = {int(r["severity"]): fmt(r) for r in corr[corr["corruption"] == name].to_dict("records")}
            rows.append([model, name.replace("_", " "), clean_text] + [cells.get(s, DASH) for s in severities])
    return ["Model", "Corruption", "Clean"] + [f"Severity {s}" for s in severities], rows


def _per_severity(df: pd.DataFrame) -> list[str]:
    """Per dataset: top-1 error per severity with the cell's 95 % interval, and top-5 error (cells.csv)."""
    cells = df.drop_duplicates(subset=["model", "dataset", "corruption", "severity"], keep="first")
    multi = cells["dataset"].nunique() > 1
    parts: list[str] = []
    for ds, g in cells.groupby("dataset", sort=True):
        if not (g["corruption"] != CLEAN).any():
            continue
        if multi:
            parts.append(f"<h3>{_esc(ds)}</h3>")
        for metric, title, ci in (("top1", "Top-1 error (%, 95 % CI)", True), ("top5", "Top-5 error (%)", False)):
            header, rows = _severity_rows(g, metric, ci)
            parts += [f"<h3>{_esc(title)}</h3>", _table(header, rows, 2)]
    return parts or [_note("No corrupted cells in these results.")]


# ------------------------------------------------------------------------------------------------ shifts


def _shifts_parts(shifts) -> list[str]:
    """The distribution-shift table of summary.md's section, with its fits and notes ([] when there is none)."""
    if shifts is None or (shifts.table.empty and not shifts.notes):
        return []
    parts = []
    if not shifts.table.empty:
        spec = tables._shift_spec(shifts)
        rows = [[str(r["model"])] + [tables._shift_cell(r, k, p, latex=False) for k, p, _ in spec]
                for r in shifts.table.to_dict("records")]
        parts += [_table(["Model", *[h for _, _, h in spec]], rows, 1, "shifts-table"),
                  _note("Top-1 accuracy (%) with 95 % CIs; ER in points. " + tables.ER_NOTE
                        + f" n_boot = {shifts.n_boot}, seed = {shifts.seed}.")]
        parts += ["<ul>"] + [f"<li>{_esc(line)}</li>" for line in tables._fit_lines(shifts)] + ["</ul>"]
    parts += [_note(n) for n in shifts.notes]
    return parts


# ----------------------------------------------------------------------------------------------- figures


def _png_size(data: bytes) -> tuple[int, int]:
    """Pixel size from the PNG header (IHDR), without decoding the image."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


def _figure(key: str, path: Path, out_dir: Path) -> str:
    """One figure inlined as a data URI, shown at half its 300-dpi pixel size (about its size in print)."""
    data = Path(path).read_bytes()
    width, height = _png_size(data)
    kind = next((k for k in FIGURE_CAPTIONS if key.startswith(k)), "")
    rest = key[len(kind):].removesuffix("_png").strip("_") if kind else ""
    caption = FIGURE_CAPTIONS.get(kind, "") + (f" Dataset: {rest}." if rest else "")
    try:
        name = Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        name = Path(path).name
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{_esc(kind or key)}" width="{width // 2}" height="{height // 2}">'
            f"<figcaption>{_esc(caption)} <code>{_esc(name)}</code> (PDF alongside)</figcaption></figure>")


def _figures_parts(figures: Mapping[str, Path], out_dir: Path) -> list[str]:
    pngs = [(k, Path(p)) for k, p in figures.items() if str(p).lower().endswith(".png") and Path(p).is_file()]
    return [_figure(k, p, out_dir) for k, p in pngs] or [_note("No figures: nothing to plot in these results.")]


# ------------------------------------------------------------------------------------- paired, skipped


def _num(v, fmt: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return DASH
    return DASH if not np.isfinite(f) else format(f, fmt)


def _paired_parts(paired: pd.DataFrame) -> list[str]:
    """McNemar tests against the reference model on every shared cell (paired_tests.csv)."""
    if paired is None or paired.empty:
        return [_note("No paired tests: they need at least two models evaluated on the same cells.")]
    multi = paired["dataset"].nunique() > 1
    lead = (["Dataset"] if multi else []) + ["Model", "Reference", "Corruption"]
    rows = [([str(r["dataset"])] if multi else []) + [
        str(r["model"]), str(r["reference"]), str(r["corruption"]).replace("_", " "), str(int(r["severity"])),
        _num(r["n_paired"], ".0f"), tables._pct(r["top1_err"]) or DASH, tables._pct(r["reference_top1_err"]) or DASH,
        _num(r["only_model_correct"], ".0f"), _num(r["only_reference_correct"], ".0f"), _text(r["test"]),
        _num(r["statistic"], ".2f"), _num(r["p_value"], ".3g")] for r in paired.to_dict("records")]
    header = lead + ["Severity", "n paired", "Top-1 model", "Top-1 ref.", "Only model correct",
                     "Only ref. correct", "Test", "Statistic", "p"]
    return [_table(header, rows, len(lead), "paired-table"),
            _note("McNemar test on the images both cells share (exact binomial below "
                  f"{metrics.MCNEMAR_EXACT_BELOW} discordant pairs, "
                  "chi-squared otherwise); top-1 errors in %. p is not corrected for multiple comparisons.")]


def _images_skipped(df: pd.DataFrame) -> list[str]:
    """Each results folder's skipped.csv (images that could not be read), listed up to MAX_SKIPPED_IMAGES."""
    parts = []
    for d in sorted(df["results_dir"].dropna().astype(str).unique()) if "results_dir" in df else []:
        path = Path(d) / "skipped.csv"
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError, pd.errors.ParserError) as err:
            parts += [f"<h3>{_esc(path)}</h3>", _note(f"unreadable: {err}")]
            continue
        cols = [c for c in ("path", "reason") if c in frame] or list(frame.columns)
        rows = frame[cols].head(MAX_SKIPPED_IMAGES).values.tolist()
        more = len(frame) - len(rows)
        parts += [f"<h3>{_esc(path)}</h3>", _table([c.capitalize() for c in cols], rows, len(cols))]
        parts += [_note(f"... and {more} more, listed in that file.")] if more > 0 else []
    return parts


def _skipped_parts(skipped: Sequence, df: pd.DataFrame) -> list[str]:
    """Results files or rows the report left out, and images each results folder skipped."""
    parts = []
    if skipped:
        rows = [[str(s.file), "" if s.line is None else str(s.line), s.reason] for s in skipped]
        parts += ["<h3>Results left out of this report</h3>",
                  _table(["File", "Line", "Reason"], rows, 3, "skipped-results-table")]
    images = _images_skipped(df)
    if images:
        parts += [_note("Images skipped during evaluation (unreadable, or of unknown scale), per results folder:")]
        parts += images
    return parts or [_note("Nothing skipped: every results file, row and image was used.")]


# ------------------------------------------------------------------------------------------- provenance


def _provenance_parts(df: pd.DataFrame) -> list[str]:
    """One row per (model, dataset) and distinct settings: what produced the numbers, and with how many cells."""
    cols = [c for c in PROVENANCE if c in df]
    frame = df[["model", "dataset", *cols]].astype(object).where(df[["model", "dataset", *cols]].notna(), "")
    frame = frame.astype(str)
    groups = frame.groupby(list(frame.columns), sort=True, dropna=False).size().reset_index(name="cells")
    rows = [[str(v).replace(";", "; ") if c == "versions" else str(v) for c, v in r.items() if c != "cells"]
            + [str(r["cells"])] for r in groups.to_dict("records")]
    header = ["Model", "Dataset", *[c.replace("_", " ").capitalize() for c in cols], "Cells"]
    return [_table(header, rows, len(header) - 1, "provenance-table"),
            _note("From the result rows: software versions, git commit, seed, JPEG and quantisation mode, data source "
                  "and protocol, corruption backend, device, preprocessing and weights of every cell.")]


# ----------------------------------------------------------------------------------------------- the page


def _page(sections: Sequence[tuple[str, str, str]], subtitle: str) -> str:
    nav = "".join(f'<li><a href="#{a}">{_esc(t)}</a></li>' for a, t, _ in sections)
    body = "\n".join(s for _, _, s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Robustness report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"<h1>Robustness report</h1>\n<p class=\"note\">{_esc(subtitle)}</p>\n"
            f"<nav><ul>{nav}</ul></nav>\n{body}\n</main>\n</body>\n</html>\n")


def _subtitle(df: pd.DataFrame, summary: pd.DataFrame) -> str:
    models, datasets = sorted(map(str, summary["model"].unique())), sorted(map(str, summary["dataset"].unique()))
    n = ", ".join(f"{ds}: {int(g['n_images'].max())} images" for ds, g in summary.groupby("dataset"))
    return (f"{len(models)} model(s): {', '.join(models)}; {len(datasets)} dataset(s) ({n}); {len(df)} cells. "
            "Written by robustbench_in's task=report; the CSV, Parquet, LaTeX and PDF files alongside hold the same "
            "numbers.")


def write_html(out_dir: Path | str, df: pd.DataFrame, summary: pd.DataFrame, per_corruption: pd.DataFrame,
               paired: pd.DataFrame, shifts, skipped: Sequence, figures: Mapping[str, Path]) -> Path:
    """Write ``out_dir``/report.html (atomically) from the report's frames and figure files; returns its path."""
    out_dir = Path(out_dir)
    sections = _summary_sections(summary)
    sections.append(_section("per-corruption", "Per corruption", _per_corruption(per_corruption)))
    sections.append(_section("per-severity", "Per severity", _per_severity(df)))
    shift_parts = _shifts_parts(shifts)
    if shift_parts:
        sections.append(_section("shifts", "Distribution shifts", shift_parts))
    sections.append(_section("figures", "Figures", _figures_parts(figures, out_dir)))
    sections.append(_section("paired", "Paired tests", _paired_parts(paired)))
    sections.append(_section("skipped", "Skipped", _skipped_parts(skipped, df)))
    sections.append(_section("provenance", "Provenance", _provenance_parts(df)))
    page = _page(sections, _subtitle(df, summary))
    return atomic_write(out_dir / HTML_FILE, lambda p: p.write_text(page, encoding="utf-8"))
