"""Effective robustness (Taori et al. 2020) and the distribution-shift table, on synthetic results folders in the
engine's on-disk format: 4 models on clean ImageNet (imagenet_folder), ImageNet-V2, ImageNet-R (subset protocol)
and on-the-fly ImageNet-C cells, checked against fits and ERs computed by hand from the per-image records."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_in.report import metrics
from robustbench_in.report.load import load_results
from robustbench_in.report.run import run_report
from robustbench_in.report.summary import shift_report, summarize
from robustbench_in.report.tables import shifts_latex, shifts_markdown
from conftest import hand_wilson  # noqa: E402

MODELS = ("m_a", "m_b", "m_c", "m_d")
CLEAN_ACC = (0.55, 0.65, 0.75, 0.85)
V2_ACC = (0.42, 0.53, 0.64, 0.78)
R_ACC = (0.20, 0.26, 0.41, 0.45)
C_CELLS = (("gaussian_noise", "noise", 1), ("gaussian_noise", "noise", 3), ("fog", "weather", 1), ("fog", "weather", 3))
C_DROP = (0.10, 0.25, 0.05, 0.15)  # accuracy lost per ImageNet-C cell
ID_BASE = {"imagenet_folder": 0, "imagenet_v2": 100_000, "imagenet_r": 200_000, "imagenet_c_folder": 0}


def exact_correct(p: float, n: int, rng) -> np.ndarray:
    """Exactly round(p * n) correct images in random order: accuracies known to the digit."""
    c = np.zeros(n, dtype=bool)
    c[: int(round(p * n))] = True
    return rng.permutation(c)


def write_cells(run_dir: Path, model: str, dataset: str, cells, n: int, rng, protocol="full",
                source="on_the_fly") -> None:
    """One results dir as the engine writes it: results.csv (with source / protocol) and a records Parquet file
    per cell; ``cells`` = [(corruption, category, severity, accuracy)]."""
    (run_dir / "records").mkdir(parents=True, exist_ok=True)
    rows = []
    for corruption, category, severity, acc in cells:
        c1 = exact_correct(acc, n, rng)
        rec = pd.DataFrame({"image_id": np.arange(n, dtype=np.int64) + ID_BASE[dataset], "correct1": c1,
                            "correct5": c1 | (rng.random(n) < 0.5), "p_true": np.full(n, 0.5, np.float32),
                            "confidence": np.full(n, 0.6, np.float32)})
        cell_id = f"{model}-{dataset}-{corruption}-{severity}" + ("" if protocol == "full" else f"-{protocol}")
        rec.to_parquet(run_dir / "records" / f"{cell_id}.parquet", index=False)
        k1, k5 = int((~rec.correct1).sum()), int((~rec.correct5).sum())
        lo1, hi1 = hand_wilson(k1, n)
        lo5, hi5 = hand_wilson(k5, n)
        rows.append({"model": model, "dataset": dataset, "corruption": corruption, "category": category,
                     "severity": severity, "n": n, "n_skipped": 0, "top1_err": k1 / n, "top5_err": k5 / n,
                     "top1_ci_low": lo1, "top1_ci_high": hi1, "top5_ci_low": lo5, "top5_ci_high": hi5,
                     "ece": 0.1, "nll": 0.7, "seconds": 1.0, "images_per_s": n, "preprocessing": "std",
                     "jpeg_mode": "files" if source == "files" else "none", "source": source, "protocol": protocol,
                     "backend": "test", "seed": 0, "cell_id": cell_id, "records": f"records/{cell_id}.parquet",
                     "device": "cpu", "versions": "x"})
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)


def write_sweep(root: Path, n: int = 400, models=MODELS, seed: int = 0) -> Path:
    """imagenet_folder clean + 4 on-the-fly ImageNet-C cells, imagenet_v2, imagenet_r (subset) per model."""
    rng = np.random.default_rng(seed)
    for i, m in enumerate(models):
        j = MODELS.index(m)
        in_cells = [("clean", "clean", 0, CLEAN_ACC[j])]
        in_cells += [(c, cat, s, CLEAN_ACC[j] - d * (1 + 0.2 * j)) for (c, cat, s), d in zip(C_CELLS, C_DROP)]
        write_cells(root / f"{i}_in", m, "imagenet_folder", in_cells, n, rng)
        write_cells(root / f"{i}_v2", m, "imagenet_v2", [("clean", "clean", 0, V2_ACC[j])], n, rng)
        write_cells(root / f"{i}_r", m, "imagenet_r", [("clean", "clean", 0, R_ACC[j])], n // 2, rng,
                    protocol="subset")
    return root


def accuracies(root: Path) -> dict:
    """{(model, dataset, corruption, severity): accuracy} straight from the records files, by hand."""
    out = {}
    for csv in root.rglob("results.csv"):
        for r in pd.read_csv(csv).itertuples():
            rec = pd.read_parquet(csv.parent / r.records)
            out[(r.model, r.dataset, r.corruption, r.severity)] = float(rec["correct1"].mean())
    return out


def hand_fit(x_acc, y_acc):
    """np.polyfit on logits computed by hand (clipping is not needed: no accuracy is 0 or 1 here)."""
    lx = np.log(np.asarray(x_acc) / (1 - np.asarray(x_acc)))
    ly = np.log(np.asarray(y_acc) / (1 - np.asarray(y_acc)))
    return np.polyfit(lx, ly, 1)


def hand_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("shifts") / "sweep")


def report_of(root: Path, n_boot: int = 300, **kw):
    df = load_results([root])
    summary = summarize(df, n_boot=50, **kw)
    return shift_report(df, summary, n_boot=n_boot, seed=0, **kw), summary


# ------------------------------------------------------------------------------------------- pure math


def test_logit_fit_and_er_by_hand():
    # logits x = 0, 1, 2, 1 and y = -1, 0, 1, 1: xm = 1, ym = 0.25, Sxx = 2, Sxy = 2 -> a = 1, b = -0.75
    ref = hand_sigmoid(np.array([0.0, 1.0, 2.0, 1.0]))
    shift = hand_sigmoid(np.array([-1.0, 0.0, 1.0, 1.0]))
    a, b = metrics.logit_fit(ref, shift)
    assert (a, b) == pytest.approx((1.0, -0.75))
    assert (a, b) == pytest.approx(tuple(hand_fit(ref, shift)))
    er = metrics.effective_robustness(ref, shift, a, b)
    hand = [hand_sigmoid(-1) - hand_sigmoid(-0.75), hand_sigmoid(0) - hand_sigmoid(0.25),
            hand_sigmoid(1) - hand_sigmoid(1.25), hand_sigmoid(1) - hand_sigmoid(0.25)]
    assert er == pytest.approx(hand)
    assert er[3] == pytest.approx(0.168882, abs=1e-6)
    # a NaN model is left out; two models or no spread in clean accuracy give no fit
    assert metrics.logit_fit(np.append(ref, np.nan), np.append(shift, 0.5)) == pytest.approx((1.0, -0.75))
    assert all(math.isnan(v) for v in metrics.logit_fit(ref[:2], shift[:2]))
    assert all(math.isnan(v) for v in metrics.logit_fit([0.7, 0.7, 0.7], [0.5, 0.6, 0.4]))
    # 0 % and 100 % are clipped, not infinite
    assert np.isfinite(metrics.logit([0.0, 1.0])).all()
    assert np.isfinite(metrics.logit_fit([0.0, 0.5, 1.0], [0.0, 0.3, 1.0])).all()
    assert metrics.sigmoid(metrics.logit(0.3)) == pytest.approx(0.3)


def correctness(p, n, rng):
    return np.stack([exact_correct(q, n, rng) for q in p], axis=1).astype(float)


def test_bootstrap_er_is_seeded_contains_the_estimate_and_narrows_with_images():
    rng = np.random.default_rng(0)
    ref, shift = correctness(CLEAN_ACC, 300, rng), correctness(V2_ACC, 300, rng)
    a, b = metrics.logit_fit(ref.mean(0), shift.mean(0))
    er = metrics.effective_robustness(ref.mean(0), shift.mean(0), a, b)
    small = metrics.bootstrap_effective_robustness(ref, shift, n_boot=400, seed=3)
    again = metrics.bootstrap_effective_robustness(ref, shift, n_boot=400, seed=3)
    assert np.array_equal(small.er_low, again.er_low) and small.n_valid == 400
    assert np.all(small.er_low <= er) and np.all(er <= small.er_high)
    assert small.slope[0] <= a <= small.slope[1] and small.intercept[0] <= b <= small.intercept[1]
    assert np.all(small.acc_low <= shift.mean(0)) and np.all(shift.mean(0) <= small.acc_high)
    big = metrics.bootstrap_effective_robustness(np.tile(ref, (10, 1)), np.tile(shift, (10, 1)), n_boot=400, seed=3)
    assert np.all(big.er_high - big.er_low < 0.6 * (small.er_high - small.er_low))


def test_bootstrap_cells_and_too_few_models():
    rng = np.random.default_rng(1)
    ref = correctness(CLEAN_ACC, 200, rng)
    cells = np.stack([correctness(np.subtract(CLEAN_ACC, d), 200, rng) for d in C_DROP], axis=2)  # (n, k, c)
    three_d = metrics.bootstrap_effective_robustness(ref, cells, n_boot=200, seed=0)
    two_d = metrics.bootstrap_effective_robustness(ref, cells.mean(axis=2), n_boot=200, seed=0)
    assert np.allclose(three_d.er_low, two_d.er_low) and np.allclose(three_d.acc_high, two_d.acc_high)
    cells[:20, 0, 1] = np.nan  # images missing from one cell: the exact per-cell path, still close
    ragged = metrics.bootstrap_effective_robustness(ref, cells, n_boot=200, seed=0)
    assert np.isfinite(ragged.er_low).all() and ragged.er_low == pytest.approx(two_d.er_low, abs=0.03)
    two = metrics.bootstrap_effective_robustness(ref[:, :2], cells[:, :2], n_boot=50, seed=0)
    assert np.isnan(two.er_low).all() and np.isnan(two.slope).all() and two.n_valid == 0
    assert np.isfinite(two.acc_low).all()  # the shifted accuracy still has its interval


# ------------------------------------------------------------------------------------------ the report


def test_fit_and_er_match_hand_computation_from_records(sweep):
    acc = accuracies(sweep)
    shifts, summary = report_of(sweep)
    assert shifts.reference == "imagenet_folder"
    fits = shifts.fits.set_index("shift_set")
    assert list(fits.index) == ["imagenet_v2", "imagenet_r", "imagenet_c"]
    table = shifts.table.set_index("model")
    assert list(table.index) == list(MODELS)
    x = np.array([acc[(m, "imagenet_folder", "clean", 0)] for m in MODELS])
    sets = {"imagenet_v2": np.array([acc[(m, "imagenet_v2", "clean", 0)] for m in MODELS]),
            "imagenet_r": np.array([acc[(m, "imagenet_r", "clean", 0)] for m in MODELS]),
            "imagenet_c": np.array([np.mean([acc[(m, "imagenet_folder", c, s)] for c, _, s in C_CELLS])
                                    for m in MODELS])}
    assert table["clean_top1_acc"].to_numpy() == pytest.approx(x)
    for name, y in sets.items():
        a, b = hand_fit(x, y)
        assert (fits.loc[name, "slope"], fits.loc[name, "intercept"]) == pytest.approx((a, b), rel=1e-9)
        assert fits.loc[name, "n_models"] == 4
        assert table[f"{name}_top1_acc"].to_numpy() == pytest.approx(y)
        er = y - hand_sigmoid(a * np.log(x / (1 - x)) + b)
        assert table[f"{name}_ER"].to_numpy() == pytest.approx(er, abs=1e-12)
        lo, hi = table[f"{name}_ER_ci_low"].to_numpy(), table[f"{name}_ER_ci_high"].to_numpy()
        assert np.all(lo <= er) and np.all(er <= hi) and np.all(hi - lo > 0)
        assert fits.loc[name, "slope_ci_low"] <= a <= fits.loc[name, "slope_ci_high"]
        # the summary row of the set's data carries the same point estimate
        rows = summary[summary["dataset"] == ("imagenet_folder" if name == "imagenet_c" else name)]
        assert rows.set_index("model").loc[list(MODELS), "effective_robustness"].to_numpy() == pytest.approx(er)
    assert (table["imagenet_r_protocol"] == "subset").all() and (table["imagenet_v2_protocol"] == "full").all()
    assert fits.loc["imagenet_c", "n_cells"] == 4
    # ImageNet-C: unnormalised mCE (2 corruptions are no AlexNet mCE) and a bootstrap interval for the mean
    assert (table["imagenet_c_mCE_kind"] == "unnormalised").all()
    assert table["imagenet_c_mCE"].to_numpy() == pytest.approx(1 - sets["imagenet_c"])
    assert np.all(table["imagenet_c_top1_ci_low"] < sets["imagenet_c"])
    assert np.all(sets["imagenet_c"] < table["imagenet_c_top1_ci_high"])
    # one cell's Wilson interval for a natural set
    k = round((1 - sets["imagenet_v2"][0]) * 400)
    lo, hi = hand_wilson(k, 400)
    assert (table.loc["m_a", "imagenet_v2_top1_ci_low"], table.loc["m_a", "imagenet_v2_top1_ci_high"]) == \
        pytest.approx((1 - hi, 1 - lo))
    assert shifts.notes == []


def test_shifts_columns_only_for_sets_present(sweep):
    shifts, _ = report_of(sweep, n_boot=50)
    assert list(shifts.table.columns) == [
        "model", "reference_dataset", "clean_top1_acc", "clean_top1_ci_low", "clean_top1_ci_high",
        "imagenet_v2_top1_acc", "imagenet_v2_top1_ci_low", "imagenet_v2_top1_ci_high", "imagenet_v2_protocol",
        "imagenet_v2_ER", "imagenet_v2_ER_ci_low", "imagenet_v2_ER_ci_high",
        "imagenet_r_top1_acc", "imagenet_r_top1_ci_low", "imagenet_r_top1_ci_high", "imagenet_r_protocol",
        "imagenet_r_ER", "imagenet_r_ER_ci_low", "imagenet_r_ER_ci_high",
        "imagenet_c_top1_acc", "imagenet_c_top1_ci_low", "imagenet_c_top1_ci_high", "imagenet_c_mCE",
        "imagenet_c_mCE_kind", "imagenet_c_ER", "imagenet_c_ER_ci_low", "imagenet_c_ER_ci_high"]
    md = shifts_markdown(shifts)
    header = next(ln for ln in md.splitlines() if ln.startswith("| Model"))
    assert "IN-R (subset)" in header and "IN-V2 |" in header and "Sketch" not in header and "ObjectNet" not in header
    assert "IN-C unnorm. mCE" in header and "ER IN-C" in header


def test_ci_narrows_with_more_images(tmp_path):
    few, _ = report_of(write_sweep(tmp_path / "few", n=100), n_boot=300)
    many, _ = report_of(write_sweep(tmp_path / "many", n=1600), n_boot=300)
    for name in ("imagenet_v2", "imagenet_c"):
        w_few = few.table[f"{name}_ER_ci_high"] - few.table[f"{name}_ER_ci_low"]
        w_many = many.table[f"{name}_ER_ci_high"] - many.table[f"{name}_ER_ci_low"]
        assert np.all(w_many < 0.5 * w_few), name


def test_two_models_give_nan_and_a_note(tmp_path):
    root = write_sweep(tmp_path / "sweep", n=80, models=MODELS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fewer than 3 models is a note, not a warning or a crash
        written = run_report([root], tmp_path / "report", n_boot=50)
    table = pd.read_csv(written["shifts_csv"])
    assert len(table) == 2 and table["imagenet_v2_top1_acc"].notna().all()
    for name in ("imagenet_v2", "imagenet_r", "imagenet_c"):
        assert table[f"{name}_ER"].isna().all() and table[f"{name}_ER_ci_low"].isna().all()
    md = written["summary_md"].read_text()
    assert "## Distribution shifts" in md
    assert "imagenet_v2: effective robustness needs >= 3 models with both imagenet_folder clean and imagenet_v2 " \
           "accuracies; 2 have both, so it is left empty." in md
    assert pd.read_csv(written["summary_csv"])["effective_robustness"].isna().all()
    assert written["effective_robustness_png"].stat().st_size > 5_000  # the points, without a fit line


def test_run_report_writes_the_shifts_outputs(sweep, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = run_report([sweep], tmp_path / "report", n_boot=200)
    for key in ("shifts_csv", "shifts_tex", "shift_fits_csv", "effective_robustness_png", "effective_robustness_pdf"):
        assert written[key].is_file(), key
    assert written["effective_robustness_pdf"].read_bytes()[:5] == b"%PDF-"
    tex = written["shifts_tex"].read_text()
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule")) and tex.count("{") == tex.count("}")
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    n_cols = len(tex.split(r"\begin{tabular}{")[1].split("}")[0])
    assert [ln.split(" & ")[0] for ln in body] == [m.replace("_", r"\_") for m in MODELS]
    assert all(ln.count(" & ") == n_cols - 1 and ln.endswith(r"\\") for ln in body)
    md = written["summary_md"].read_text()
    section = md.split("## Distribution shifts")[1]
    assert "logit(acc) = " in section and "Taori" in section
    # a report into the same folder from results without any shift set drops the stale shift files
    other = tmp_path / "other"
    write_cells(other / "0", "m_a", "imagenet_folder", [("clean", "clean", 0, 0.7)], 20, np.random.default_rng(0))
    again = run_report([other], tmp_path / "report", n_boot=20)
    assert "shifts_csv" not in again and not (tmp_path / "report" / "shifts.csv").exists()
    assert "## Distribution shifts" not in again["summary_md"].read_text()


def test_reference_dataset_choice_and_file_cells(tmp_path):
    root = write_sweep(tmp_path / "sweep", n=60)
    rng = np.random.default_rng(5)
    for i, m in enumerate(MODELS):  # the released ImageNet-C files of one corruption, for every model
        write_cells(root / f"{i}_files", m, "imagenet_c_folder",
                    [("fog", "weather", s, CLEAN_ACC[i] - 0.1 * s) for s in (1, 2)], 60, rng, source="files")
    shifts, _ = report_of(root, n_boot=50)
    assert list(shifts.fits["shift_set"]) == ["imagenet_v2", "imagenet_r", "imagenet_c", "imagenet_c_folder"]
    assert shifts.table["imagenet_c_folder_top1_acc"].to_numpy() == pytest.approx(np.subtract(CLEAN_ACC, 0.15))
    assert "ER IN-C (files)" in shifts_latex(shifts) and "ER IN-C (files)" in shifts_markdown(shifts)
    # an explicit reference: ImageNet-V2 as the x axis
    shifts, _ = report_of(root, n_boot=20, reference_dataset="imagenet_v2")
    assert shifts.reference == "imagenet_v2"
    assert shifts.table["clean_top1_acc"].to_numpy() == pytest.approx(V2_ACC, abs=0.01)
    assert list(shifts.fits["shift_set"]) == ["imagenet_r", "imagenet_c_folder"]  # not V2 against itself
    with pytest.raises(ValueError, match="reference_dataset='imagenet_x' has no clean cell.*imagenet_folder"):
        report_of(root, reference_dataset="imagenet_x")
    # no clean ImageNet at all: a note instead of a table
    only = tmp_path / "only"
    write_cells(only / "0", "m_a", "imagenet_v2", [("clean", "clean", 0, 0.5)], 20, rng)
    shifts, _ = report_of(only)
    assert shifts.table.empty and "no clean ImageNet val cell" in shifts.notes[0]
    assert "## Distribution shifts" in shifts_markdown(shifts)


def test_both_protocols_of_a_set_are_two_shift_sets(tmp_path):
    root = write_sweep(tmp_path / "sweep", n=60)
    rng = np.random.default_rng(9)
    for i, m in enumerate(MODELS):  # ImageNet-R again, 1000-way this time: another task, another fit
        write_cells(root / f"{i}_r_full", m, "imagenet_r", [("clean", "clean", 0, R_ACC[i] - 0.05)], 30, rng)
    with pytest.warns(UserWarning, match="evaluated more than once"):  # the per-dataset summary keeps one
        shifts, summary = report_of(root, n_boot=20)
    fits = shifts.fits.set_index("shift_set")
    assert list(fits.index) == ["imagenet_v2", "imagenet_r_full", "imagenet_r_subset", "imagenet_c"]
    assert fits.loc["imagenet_r_subset", "protocol"] == "subset" and fits.loc["imagenet_r_full", "n_models"] == 4
    table = shifts.table.set_index("model")
    assert table["imagenet_r_full_top1_acc"].to_numpy() == pytest.approx(np.subtract(R_ACC, 0.05), abs=0.02)
    assert table["imagenet_r_subset_top1_acc"].to_numpy() == pytest.approx(R_ACC, abs=0.02)
    header = next(ln for ln in shifts_markdown(shifts).splitlines() if ln.startswith("| Model"))
    assert "| IN-R | IN-R (subset) |" in header
    assert summary.loc[summary["dataset"] == "imagenet_r", "effective_robustness"].isna().all()
