"""The report on synthetic sweep directories in the engine's on-disk format, checked against hand computations
from the per-image records (two models x three corruptions x two severities on 16 images)."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from robustbench_in.report import plots
from robustbench_in.report.alexnet import ALEXNET_CLEAN_ERR, ALEXNET_ERR, BENCHMARK_CORRUPTIONS, SEVERITIES
from robustbench_in.report.load import load_results
from robustbench_in.report.run import run_report
from robustbench_in.report.summary import corruption_table, paired_tests, summarize
from robustbench_in.report.tables import to_latex, to_markdown
from conftest import hand_ece, hand_wilson  # noqa: E402

N = 16
IMAGE_IDS = np.arange(100, 100 + N, dtype=np.int64)
CORRUPTIONS = {"gaussian_noise": "noise", "defocus_blur": "blur", "contrast": "digital"}
SWEEP_SEVERITIES = (1, 3)
MODELS = ("tiny_a", "tiny_b")
COLUMNS = ["model", "dataset", "corruption", "category", "severity", "n", "n_skipped", "top1_err", "top5_err",
           "top1_ci_low", "top1_ci_high", "top5_ci_low", "top5_ci_high", "ece", "nll", "seconds", "images_per_s",
           "preprocessing", "jpeg_mode", "seed", "config_hash", "cell_id", "records", "device", "versions"]






def make_records(rng, p_correct: float) -> pd.DataFrame:
    labels = rng.integers(0, 1000, N)
    c1 = rng.random(N) < p_correct
    c5 = c1 | (rng.random(N) < 0.5)
    p_true = np.where(c1, rng.uniform(0.35, 0.95, N), rng.uniform(0.001, 0.3, N)).astype(np.float32)
    conf = np.where(c1, p_true, rng.uniform(0.31, 0.99, N)).astype(np.float32)
    pred = np.where(c1, labels, (labels + 1) % 1000)
    return pd.DataFrame({"image_id": IMAGE_IDS, "label": labels.astype(np.int64), "pred": pred.astype(np.int64),
                         "correct1": c1, "correct5": c5, "p_true": p_true, "confidence": conf})


def write_run(run_dir: Path, model: str, cells: list[tuple[str, str, int, float]], rng, dataset="imagenet_sample",
              shuffle: bool = False, with_records: bool = True) -> dict:
    """One results dir as the engine writes it; returns {(corruption, severity): records frame}."""
    (run_dir / "records").mkdir(parents=True, exist_ok=True)
    rows, recs = [], {}
    for corruption, category, severity, p_correct in cells:
        rec = make_records(rng, p_correct)
        cell_id = f"{model}-{dataset}-{corruption}-{severity}"
        if with_records:
            # Records of a model may come in any order: pairing must go by image_id.
            (rec.sample(frac=1.0, random_state=1) if shuffle else rec).to_parquet(
                run_dir / "records" / f"{cell_id}.parquet", index=False)
        recs[(corruption, severity)] = rec
        k1, k5 = int((~rec.correct1).sum()), int((~rec.correct5).sum())
        lo1, hi1 = hand_wilson(k1, N)
        lo5, hi5 = hand_wilson(k5, N)
        rows.append({
            "model": model, "dataset": dataset, "corruption": corruption, "category": category,
            "severity": severity, "n": N, "n_skipped": 0, "top1_err": k1 / N, "top5_err": k5 / N,
            "top1_ci_low": lo1, "top1_ci_high": hi1, "top5_ci_low": lo5, "top5_ci_high": hi5,
            "ece": hand_ece(rec.confidence.astype(float), rec.correct1),
            "nll": float(np.mean(-np.log(rec.p_true.astype(float)))),
            "seconds": 0.5, "images_per_s": 32.0,
            "preprocessing": "size=224,resize=256,crop=center,interp=bilinear", "jpeg_mode": "none",
            "seed": 0, "config_hash": "abc123", "cell_id": cell_id,
            "records": f"records/{cell_id}.parquet" if with_records else "", "device": "cpu",
            "versions": "torch=2.x;robustbench_in=0.1"})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(run_dir / "results.csv", index=False)
    return recs


def sweep_cells(p_clean, p_corr):
    cells = [("clean", "clean", 0, p_clean)]
    for j, (c, cat) in enumerate(CORRUPTIONS.items()):
        for s in SWEEP_SEVERITIES:
            cells.append((c, cat, s, max(0.05, p_corr - 0.1 * j - 0.05 * s)))
    return cells


@pytest.fixture
def sweep(tmp_path):
    """A Hydra-like multirun dir: sweep/<job>/results.csv, one job per model; returns (dir, records)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "sweep" / "2024-01-01" / "12-00-00"
    records = {
        "tiny_a": write_run(root / "0", "tiny_a", sweep_cells(0.7, 0.6), rng),
        "tiny_b": write_run(root / "1", "tiny_b", sweep_cells(0.5, 0.5), rng, shuffle=True),
    }
    return tmp_path / "sweep", records


def err(rec, col="correct1"):
    return float(1.0 - rec[col].mean())


# ------------------------------------------------------------------------------------------------ loading


def test_load_results_finds_nested_runs_and_drops_duplicate_cells(sweep, tmp_path):
    root, _ = sweep
    df = load_results([root])
    assert len(df) == 2 * (1 + 3 * 2)
    assert set(df["model"]) == set(MODELS)
    assert (df["jpeg_mode"] == "none").all() and df["severity"].dtype.kind == "i"
    assert all(Path(d).is_dir() for d in df["results_dir"])
    # The same run copied into a second sweep: its cells are counted once.
    other = tmp_path / "other"
    shutil.copytree(root / "2024-01-01" / "12-00-00" / "0", other / "0")
    with pytest.warns(UserWarning, match="duplicate"):
        both = load_results([root, other])
    assert len(both) == len(df)
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        load_results([tmp_path / "other" / "0" / "records"])


def test_recompute_restores_cell_numbers_from_records(sweep):
    root, records = sweep
    csv = next(root.rglob("0/results.csv"))
    good = pd.read_csv(csv)
    bad = good.copy()
    for col in ("top1_err", "top5_err", "top1_ci_low", "ece", "nll"):
        bad[col] = 0.123
    bad.to_csv(csv, index=False)
    df = load_results([root], recompute=True)
    a = df[df["model"] == "tiny_a"].set_index("cell_id").loc[good["cell_id"]]
    for col in ("top1_err", "top5_err", "top1_ci_low", "top1_ci_high", "ece", "nll"):
        assert a[col].to_numpy() == pytest.approx(good[col].to_numpy(), abs=1e-6), col


# ------------------------------------------------------------------------------------------------ summary


def test_summary_numbers_recomputed_by_hand(sweep):
    root, records = sweep
    df = load_results([root])
    summary = summarize(df, n_boot=500).set_index("model")
    assert list(summary.index) == list(MODELS) and len(summary) == 2
    for model in MODELS:
        rec, row = records[model], summary.loc[model]
        clean = rec[("clean", 0)]
        corr = [rec[(c, s)] for c in CORRUPTIONS for s in SWEEP_SEVERITIES]
        assert row["clean_top1_err"] == pytest.approx(err(clean))
        assert row["clean_top5_err"] == pytest.approx(err(clean, "correct5"))
        k = int((~clean.correct1).sum())
        assert (row["clean_top1_ci_low"], row["clean_top1_ci_high"]) == pytest.approx(hand_wilson(k, N))
        mean1 = np.mean([err(r) for r in corr])
        mean5 = np.mean([err(r, "correct5") for r in corr])
        assert row["corr_top1_err"] == pytest.approx(mean1)
        assert row["corr_top5_err"] == pytest.approx(mean5)
        assert row["corr_top1_ci_low"] <= mean1 <= row["corr_top1_ci_high"]
        assert 0 < row["corr_top1_ci_high"] - row["corr_top1_ci_low"] < 0.5
        assert row["top5_degradation_abs"] == pytest.approx(mean5 - err(clean, "correct5"))
        rel = (mean5 - err(clean, "correct5")) / err(clean, "correct5") if err(clean, "correct5") else math.nan
        assert row["top5_degradation_rel"] == pytest.approx(rel, nan_ok=True)
        for c, cat in CORRUPTIONS.items():
            assert row[f"top1_err_{cat}"] == pytest.approx(np.mean([err(rec[(c, s)]) for s in SWEEP_SEVERITIES]))
        assert "top1_err_weather" not in summary.columns
        # unnormalised mCE = mean over corruptions of the severity mean (= mean over cells here)
        assert row["unnormalised_mCE"] == pytest.approx(mean1)
        assert row["corr_ece"] == pytest.approx(np.mean([hand_ece(r.confidence.astype(float), r.correct1)
                                                         for r in corr]))
        assert row["corr_nll"] == pytest.approx(np.mean([np.mean(-np.log(r.p_true.astype(float))) for r in corr]))
        assert row["clean_nll"] == pytest.approx(np.mean(-np.log(clean.p_true.astype(float))))
        # 3 corruptions x 2 severities is no mCE: NaN and a flag saying why
        assert math.isnan(row["mCE"]) and math.isnan(row["relative_mCE"])
        assert "missing 12/15" in row["mCE_coverage"] and "no severity 2,4,5" in row["mCE_coverage"]
        assert not row["mCE_comparable"]
    # The bootstrap is seeded: same numbers twice.
    again = summarize(df, n_boot=500).set_index("model")
    assert again["corr_top1_ci_low"].tolist() == summary["corr_top1_ci_low"].tolist()


def test_baseline_normalised_mce_by_hand(sweep):
    root, records = sweep
    df = load_results([root])
    summary = summarize(df, baseline="tiny_a", n_boot=50).set_index("model")
    a, b = records["tiny_a"], records["tiny_b"]
    hand = np.mean([sum(err(b[(c, s)]) for s in SWEEP_SEVERITIES) / sum(err(a[(c, s)]) for s in SWEEP_SEVERITIES)
                    for c in CORRUPTIONS])
    assert summary.loc["tiny_b", "baseline_mCE"] == pytest.approx(hand)
    assert summary.loc["tiny_a", "baseline_mCE"] == pytest.approx(1.0)
    assert (summary["baseline"] == "tiny_a").all()
    assert summary.loc["tiny_b", "baseline_coverage"] == "3 corruptions x severities 1,3"
    with pytest.raises(ValueError, match="baseline model 'resnet9000'.*tiny_a, tiny_b"):
        summarize(df, baseline="resnet9000")


def test_alexnet_mce_through_the_report_on_a_full_table(tmp_path):
    """15 corruptions x 5 severities + clean (records not needed for mCE): summary mCE == hand table."""
    rng = np.random.default_rng(7)
    cells = [("clean", "clean", 0, 0.75)]
    cells += [(c, "any", s, 0.6) for c in BENCHMARK_CORRUPTIONS for s in SEVERITIES]
    cells += [("speckle_noise", "noise", s, 0.1) for s in SEVERITIES]  # extra: not part of mCE
    write_run(tmp_path / "run", "tiny_a", cells, rng, with_records=False)
    df = load_results([tmp_path])
    row = summarize(df).iloc[0]
    e = {(c, s): v for c, s, v in df[["corruption", "severity", "top1_err"]].itertuples(index=False)}
    clean = e[("clean", 0)]
    hand = np.mean([sum(e[(c, s)] for s in SEVERITIES) / sum(ALEXNET_ERR[c].values()) for c in BENCHMARK_CORRUPTIONS])
    hand_rel = np.mean([sum(e[(c, s)] - clean for s in SEVERITIES)
                        / sum(ALEXNET_ERR[c][s] - ALEXNET_CLEAN_ERR for s in SEVERITIES)
                        for c in BENCHMARK_CORRUPTIONS])
    assert row["mCE"] == pytest.approx(hand) and row["relative_mCE"] == pytest.approx(hand_rel)
    assert row["mCE_coverage"] == "15 corruptions x 5 severities"
    assert not row["mCE_comparable"]  # 16 images, not the 50k val set
    assert row["n_corruptions"] == 16 and math.isnan(row["corr_top1_ci_low"])
    per = corruption_table(df).set_index("corruption")
    assert per.loc["fog", "CE"] == pytest.approx(sum(e[("fog", s)] for s in SEVERITIES)
                                                  / sum(ALEXNET_ERR["fog"].values()))
    assert per.loc["speckle_noise", "CE"] > 0  # AlexNet has extras: a CE, but outside mCE


# ----------------------------------------------------------------------------------------- paired tests


def test_paired_tests_match_scipy_binomtest(sweep):
    root, records = sweep
    df = load_results([root])
    paired = paired_tests(df)  # default reference: first model by name
    assert len(paired) == 1 + 3 * 2 and (paired["reference"] == "tiny_a").all()
    assert (paired["model"] == "tiny_b").all() and (paired["n_paired"] == N).all()
    for row in paired.itertuples():
        a = records["tiny_a"][(row.corruption, row.severity)]
        b = records["tiny_b"][(row.corruption, row.severity)]
        n_b = int((b.correct1 & ~a.correct1).sum())
        n_c = int((~b.correct1 & a.correct1).sum())
        assert (row.only_model_correct, row.only_reference_correct) == (n_b, n_c)
        expected = stats.binomtest(n_b, n_b + n_c, 0.5).pvalue if n_b + n_c else 1.0
        assert row.p_value == pytest.approx(expected, rel=1e-9)
    assert paired["p_value"].nunique() > 1  # not a constant


# --------------------------------------------------------------------------------------------- exports


def test_latex_and_markdown_tables(sweep):
    root, _ = sweep
    summary = summarize(load_results([root]), baseline="tiny_b", n_boot=50)
    tex = to_latex(summary)
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 2
    assert tex.count("{") == tex.count("}")
    for table in tex.split(r"\begin{table*}")[1:]:
        body = table.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
        assert len(body) == 2 and body[0].startswith(r"tiny\_a") and body[1].startswith(r"tiny\_b")
        n_cols = table.split(r"\begin{tabular}{")[1].split("}")[0]
        assert all(line.count(" & ") == len(n_cols) - 1 and line.endswith(r"\\") for line in body)
    assert "50,000" in tex and r"\textbf" in tex and "tiny_a" not in tex
    md = to_markdown(summary)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    head = md.split("## Per category")[0]
    table = [ln for ln in head.splitlines() if ln.startswith("|")]
    assert len(table) == 4 and set(table[1].replace("|", "").split()) <= {":---", "---:"}
    assert table[2].startswith("| tiny_a") and table[3].startswith("| tiny_b")
    assert all(ln.count("|") == table[0].count("|") for ln in table) and lines


def test_run_report_writes_everything(sweep, tmp_path):
    root, records = sweep
    out = tmp_path / "report"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean sweep produces no warning
        # the sweep's clean cells stand in for clean ImageNet: its corrupted cells make the effective-robustness plot
        written = run_report([root], out, n_boot=200, reference_dataset="imagenet_sample")
    for key in ("cells_csv", "cells_parquet", "summary_csv", "summary_tex", "summary_md", "paired_tests_csv",
                "corruption_errors_csv", "shifts_csv", "shifts_tex"):
        assert written[key].is_file() and written[key].parent == out, key
    cells = pd.read_csv(written["cells_csv"])
    assert len(cells) == 2 * (1 + 3 * 2)
    assert pd.read_parquet(written["cells_parquet"]).shape == cells.shape
    b = cells[cells["model"] == "tiny_b"]
    assert b["mcnemar_p"].notna().all() and cells.loc[cells["model"] == "tiny_a", "mcnemar_p"].isna().all()
    assert len(pd.read_csv(written["summary_csv"])) == 2
    figures = {"error_vs_severity", "degradation_heatmap", "mce_bar", "effective_robustness"}
    for fig in figures:
        png, pdf = written[f"{fig}_png"], written[f"{fig}_pdf"]
        assert png.stat().st_size > 5_000 and pdf.stat().st_size > 5_000, fig
        assert pdf.read_bytes()[:5] == b"%PDF-"
        img = np.asarray(Image.open(png).convert("RGB"))
        assert img.shape[1] >= 600  # >= 2 in at 300 dpi (tight bounding box)
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10, fig
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temp files left behind


def test_plots_with_one_model_and_multiple_datasets(tmp_path):
    rng = np.random.default_rng(3)
    write_run(tmp_path / "r0", "solo", sweep_cells(0.6, 0.5), rng, dataset="set_one")
    write_run(tmp_path / "r1", "solo", sweep_cells(0.6, 0.5), rng, dataset="set two")
    df = load_results([tmp_path])
    summary = summarize(df, n_boot=20)
    written = plots.make_all(df, summary, tmp_path / "figs")
    assert "error_vs_severity_set_two_pdf" in written
    assert len(written) == 2 * 3 * 2  # effective robustness is one figure across data sets, from the shift report
    assert all(p.stat().st_size > 5_000 for p in written.values())


def test_degradation_matrix_by_hand(sweep):
    root, records = sweep
    rel = plots.degradation_matrix(load_results([root]))
    a = records["tiny_a"]
    clean = err(a[("clean", 0)])
    hand = (np.mean([err(a[("contrast", s)]) for s in SWEEP_SEVERITIES]) - clean) / clean
    assert rel.loc["tiny_a", "contrast"] == pytest.approx(hand)
    assert list(rel.columns) == ["gaussian_noise", "defocus_blur", "contrast"]  # paper order


def test_results_without_ci_columns_get_wilson_intervals(sweep):
    root, records = sweep
    csv = next(root.rglob("1/results.csv"))
    pd.read_csv(csv).drop(columns=["top1_ci_low", "top1_ci_high", "ece"]).to_csv(csv, index=False)
    df = load_results([root])
    row = summarize(df, n_boot=20).set_index("model").loc["tiny_b"]
    k = int((~records["tiny_b"][("clean", 0)].correct1).sum())
    assert (row["clean_top1_ci_low"], row["clean_top1_ci_high"]) == pytest.approx(hand_wilson(k, N))
    assert math.isnan(row["clean_ece"]) and math.isfinite(row["clean_nll"])
