"""report.html, the one file a report is shared as: checked as markup (the summary table's numbers equal
summary.csv's, every figure inlined, data strings escaped, nothing fetched from anywhere) and in a real headless
Chromium (no console error, every figure decoded with a non-zero size, the rendered summary numbers equal
summary.csv's, a screenshot comes out). Without Chromium the browser tests skip, except under CI (CI=true)."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustbench_in.report.run import run_report
from robustbench_in.report.tables import _main_columns
from test_report import sweep_cells, write_run  # noqa: E402

ODD_MODEL = "tiny_<b>&a"  # a model name that is markup if not escaped
ODD_IMAGE = "/images/<x>&y.JPEG"
# summary.csv column of an error -> the prefix of its CI columns
CI_OF = {"clean_top1_err": "clean_top1", "clean_top5_err": "clean_top5",
         "corr_top1_err": "corr_top1", "corr_top5_err": "corr_top5"}
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Three models (one with markup in its name), an unreadable image, a broken results file; the report dir."""
    root = tmp_path_factory.mktemp("html") / "sweep"
    rng = np.random.default_rng(0)
    for i, (model, p) in enumerate(((ODD_MODEL, 0.7), ("tiny_b", 0.5), ("tiny_c", 0.6))):
        write_run(root / str(i), model, sweep_cells(p, p - 0.1), rng)
    pd.DataFrame({"path": [ODD_IMAGE], "reason": ["cannot identify image <file>"]}).to_csv(
        root / "0" / "skipped.csv", index=False)
    (root / "broken").mkdir()
    (root / "broken" / "results.csv").write_text("foo,bar\n1,2\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the broken file is warned about, and listed in the report
        written = run_report([root], root.parent / "report", n_boot=100, reference_dataset="imagenet_sample")
    return written


class _Tables(HTMLParser):
    """Rows of every <table id=...> as [(data-col, text)], the src/href attributes, and the <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self.links: list[str] = []
        self.images: list[str] = []
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "table":
            self._table = a.get("id", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = [a.get("data-col", ""), ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def _parse(page: str) -> _Tables:
    p = _Tables()
    p.feed(page)
    return p


def check_summary_numbers(rows: list[list[tuple[str, str]]], summary: pd.DataFrame) -> None:
    """Every summary row and column is there, each cell showing summary.csv's value (in %) and its CI."""
    expected_cols = {c for c, _, _ in _main_columns(summary)}
    by_model = summary.set_index("model")
    assert sorted(r[0][1] for r in rows) == sorted(by_model.index)
    for row in rows:
        model, cells = row[0][1], {col: text.strip() for col, text in row[1:]}
        assert set(cells) == expected_cols, model
        for col, text in cells.items():
            v = by_model.at[model, col]
            if not np.isfinite(v):
                assert text == "–", (model, col, text)
                continue
            want = [v] + ([by_model.at[model, f"{CI_OF[col]}_ci_low"], by_model.at[model, f"{CI_OF[col]}_ci_high"]]
                          if col in CI_OF else [])
            got = [float(x) for x in NUMBER.findall(text)]
            assert got == pytest.approx([100 * w for w in want], abs=0.05 + 1e-9), (model, col, text)


# ---------------------------------------------------------------------------------------- markup, no browser


def test_report_html_is_written_next_to_the_other_outputs(report):
    page = report["report_html"]
    assert page.name == "report.html" and page.parent == report["summary_csv"].parent
    for key in ("summary_csv", "summary_md", "summary_tex", "cells_parquet", "paired_tests_csv", "mce_bar_pdf"):
        assert report[key].is_file(), key  # the other outputs are still there
    text = page.read_text(encoding="utf-8")
    for section in ("summary", "degradation", "mce", "categories", "per-corruption", "per-severity", "shifts",
                    "figures", "paired", "skipped", "provenance"):
        assert f'<section id="{section}">' in text, section


def test_summary_table_numbers_equal_summary_csv(report):
    parsed = _parse(report["report_html"].read_text(encoding="utf-8"))
    summary = pd.read_csv(report["summary_csv"])
    check_summary_numbers(parsed.tables["summary-table"][1:], summary)
    # clean vs corrupted: top-1 degradation in points, from the same summary numbers
    for row in parsed.tables["degradation-table"][1:]:
        s = summary.set_index("model").loc[row[0][1]]
        assert float(row[3][1]) == pytest.approx(100 * (s["corr_top1_err"] - s["clean_top1_err"]), abs=0.051)
    paired = pd.read_csv(report["paired_tests_csv"])
    assert len(parsed.tables["paired-table"]) - 1 == len(paired) > 0
    assert len(parsed.tables["shifts-table"]) - 1 == len(pd.read_csv(report["shifts_csv"]))


def test_figures_are_inlined_and_nothing_is_fetched(report):
    page = report["report_html"].read_text(encoding="utf-8")
    parsed = _parse(page)
    pngs = sorted(report["report_html"].parent.joinpath("plots").glob("*.png"))
    assert len(pngs) == 4 and len(parsed.images) == len(pngs)
    inlined = {base64.b64decode(src.split(",", 1)[1]) for src in parsed.images}
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert inlined == {p.read_bytes() for p in pngs}
    assert all(link.startswith(("data:", "#")) for link in parsed.links), parsed.links
    assert not re.search(r"https?://|<script|@import|url\(", page, re.IGNORECASE)


def test_data_strings_are_escaped(report):
    page = report["report_html"].read_text(encoding="utf-8")
    assert "<b>" not in page and "<x>" not in page and "<file>" not in page
    assert "tiny_&lt;b&gt;&amp;a" in page and html.escape(ODD_IMAGE) in page
    parsed = _parse(page)
    assert ODD_MODEL in {r[0][1] for r in parsed.tables["summary-table"][1:]}
    skipped = [c[1] for r in parsed.tables["skipped-results-table"][1:] for c in r]
    assert any(s.endswith("broken/results.csv") for s in skipped)
    provenance = "".join(c[1] for r in parsed.tables["provenance-table"] for c in r)
    for text in ("Jpeg mode", "Versions", "Preprocessing", "Device", "Seed", "torch=2.x; robustbench_in=0.1"):
        assert text in provenance, text


# ------------------------------------------------------------------------------------------ real browser

PROBE = """<script>
console.error("probe-sentinel");
window.__errors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? "failed to load " + t.tagName : "error: " + e.message);
}, true);
["error", "warn"].forEach(function (k) {
  var f = console[k];
  console[k] = function () {
    window.__errors.push(k + ": " + Array.from(arguments).join(" "));
    f.apply(console, arguments);
  };
});
window.addEventListener("load", function () {
  var images = Array.from(document.images).map(function (i) {
    var r = i.getBoundingClientRect();
    return {complete: i.complete, natural: [i.naturalWidth, i.naturalHeight], shown: [r.width, r.height]};
  });
  var rows = Array.from(document.querySelectorAll("#summary-table tbody tr")).map(function (tr) {
    return Array.from(tr.cells).map(function (td) { return [td.dataset.col || "", td.textContent]; });
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({images: images, summary: rows, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d+\)?\] \"(.*)\", source: ")


def chromium() -> str:
    """Debian's chromium (or another Chromium) on PATH; a skip with the reason, a failure under CI (CI=true)."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        msg = "headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + msg)
        pytest.skip(msg)
    return exe


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc


def probe_page(page: str, tmp_path: Path) -> tuple[list[str], dict]:
    """Open a copy of ``page`` with PROBE in its head: (console messages but the sentinel, the probe's JSON).

    The probe's own console.error proves the console is captured at all, so a silent Chromium cannot pass for a
    clean page; its error listener (capture phase, registered before any image) records failed loads."""
    copy = tmp_path / "probe.html"
    assert page.count("<head>") == 1
    copy.write_text(page.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    proc = run_chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                        "--dump-dom", copy.as_uri())
    messages = CONSOLE_LINE.findall(proc.stderr)
    assert "probe-sentinel" in messages, f"console not captured: {proc.stderr[-2000:]}"
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, "the probe did not run on load: " + proc.stdout[-500:]
    return [m for m in messages if m != "probe-sentinel"], json.loads(html.unescape(found.group(1)))


def test_report_renders_in_headless_chromium(report, tmp_path):
    """No console message (the page has no script: any is an error), every figure decoded and shown with a size,
    the summary numbers in the rendered DOM equal summary.csv's."""
    messages, probe = probe_page(report["report_html"].read_text(encoding="utf-8"), tmp_path)
    assert messages == [] and probe["errors"] == []
    assert len(probe["images"]) == 4
    for img in probe["images"]:
        assert img["complete"] and min(img["natural"]) > 0 and min(img["shown"]) > 0, img
    check_summary_numbers([[tuple(c) for c in r] for r in probe["summary"]], pd.read_csv(report["summary_csv"]))


def test_browser_check_catches_a_broken_page(report, tmp_path):
    """The same probe on a page with a script error and a truncated figure: both are reported."""
    page = report["report_html"].read_text(encoding="utf-8")
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    page = page[:start] + page[start + 5000:]  # a PNG cut short: no longer decodes
    page = page.replace("</body>", "<script>notDefined();</script></body>")
    messages, probe = probe_page(page, tmp_path)
    assert any("notDefined" in m for m in messages) and any("notDefined" in e for e in probe["errors"])
    assert "failed to load IMG" in probe["errors"]
    assert sorted(min(i["natural"]) for i in probe["images"])[0] == 0


def test_report_screenshot(report, tmp_path):
    shot = tmp_path / "report.png"
    run_chromium(tmp_path, f"--screenshot={shot}", report["report_html"].as_uri())
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 50  # text, tables and a figure, not blank
