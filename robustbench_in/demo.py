"""``task=demo`` (``make demo``): the point of the tool in about a minute, with no dataset and no download.

The embedded photos under a handful of ImageNet-C and sensor corruptions at three severities, plus clean: a compact
table of how top-1 / top-5 error degrade, a gallery of one photo, and the self-contained HTML report — built from
the same eval, gallery and report tasks a real run uses, so the demo cannot drift from them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from robustbench_in.tasks import UserError, register_task, run_eval


def degradation_table(rows: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per corruption (clean first): top-1 error per severity, mean top-1 / top-5, and the change from
    clean in points, all in %."""
    rows = rows[rows["model"] == model]
    clean = rows[rows["corruption"] == "clean"].iloc[0]
    table = [{"corruption": "clean", "category": "", "mean top-1": 100 * clean["top1_err"],
              "mean top-5": 100 * clean["top5_err"], "Δ top-1": 0.0, "Δ top-5": 0.0}]
    corrupted = rows[rows["corruption"] != "clean"]
    for name, g in corrupted.groupby("corruption", sort=False):
        entry = {"corruption": name, "category": g["category"].iloc[0]}
        entry.update({f"s{int(s)}": 100 * e for s, e in zip(g["severity"], g["top1_err"])})
        entry["mean top-1"], entry["mean top-5"] = 100 * g["top1_err"].mean(), 100 * g["top5_err"].mean()
        entry["Δ top-1"] = entry["mean top-1"] - table[0]["mean top-1"]
        entry["Δ top-5"] = entry["mean top-5"] - table[0]["mean top-5"]
        table.append(entry)
    out = pd.DataFrame(table)
    severities = sorted((c for c in out.columns if c.startswith("s") and c[1:].isdigit()), key=lambda c: int(c[1:]))
    return out[["corruption", "category", *severities, "mean top-1", "mean top-5", "Δ top-1", "Δ top-5"]]


def format_table(table: pd.DataFrame) -> str:
    def cell(column: str, value) -> str:
        if isinstance(value, str):
            return value
        if pd.isna(value):
            return ""
        return f"{value:+.1f}" if column.startswith("Δ") else f"{value:.1f}"

    body = [[cell(c, v) for c, v in row.items()] for _, row in table.iterrows()]
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(table.columns)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(table.columns, widths)))]
    lines += ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in body]
    return "\n".join(lines)


@register_task("demo")
def task_demo(cfg: DictConfig) -> Path:
    """Evaluate the suite on the data (the embedded photos by default), then print the degradation table and
    write the gallery and report.html; the paths to open come last."""
    from robustbench_in.data.datasets import build_dataset
    from robustbench_in.evaluate.suite import suite_corruptions
    from robustbench_in.report.gallery import write_gallery
    from robustbench_in.report.run import run_report

    suite = OmegaConf.to_object(cfg.suite)
    chosen = suite_corruptions(suite)
    if not chosen:
        raise UserError(f"task=demo shows what corruption does: suite={suite.name} has no corruptions (make demo "
                        "uses suite=demo)")
    store, entry, images = run_eval(cfg)
    gallery = write_gallery(build_dataset(OmegaConf.to_object(cfg.data)), entry.preprocessing, chosen,
                            suite.severities, store.root / "gallery.png", image_index=cfg.gallery.image,
                            seed=OmegaConf.to_object(cfg.runtime).seed)
    written = run_report([store.root], store.root / "report")
    n = int(store.rows()["n"].max())
    print(f"\n{entry.name}: top-1 error per severity, mean top-1 / top-5, and the change from clean "
          f"(%, {n} images)\n")
    print(format_table(degradation_table(store.rows(), entry.name)))
    if n < 100:
        print(f"\nnote: {n} photos make a demonstration, not a measurement: a 95% interval on {n} images is tens "
              "of points wide. For numbers, point it at ImageNet val: data.root=/path/to/val suite=imagenet_c")
    print(f"\nresults: {store.csv}\ngallery: {gallery}\nreport:  {written['report_html']}")
    return written["report_html"]
