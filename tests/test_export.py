"""task=export: an ImageNet-C-style JPEG tree whose files decode to exactly what on-the-fly evaluation with
``suite.faithful_jpeg=true`` feeds the model; deterministic, resumable after a kill, verifiable from its manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from omegaconf import OmegaConf
from PIL import Image

import robustbench_in.export as export
from robustbench_in.data import DataSpec, build_dataset, make_loader
from robustbench_in.data.preprocessing import STANDARD
from robustbench_in.evaluate import Runtime
from robustbench_in.evaluate.engine import corrupt_batch
from robustbench_in.evaluate.suite import build_cells
from robustbench_in.export import ExportError, export_suite, verify_export

REPO = Path(__file__).resolve().parents[1]
SMALL = ("suite.corruptions=[gaussian_noise,contrast]", "suite.severities=[1,3]")


def suite_of(*overrides: str):
    return OmegaConf.to_object(compose_config(*overrides).suite)


@pytest.fixture(scope="module")
def images(sample_root):
    return build_dataset(DataSpec(name="imagenet_folder", root=str(sample_root), max_images=6))


def run_export(images, out: Path, suite=None, batch_size: int = 64, threads: int = 2, **kw) -> dict:
    suite = suite or suite_of("suite=imagenet_c", *SMALL)
    runtime = Runtime(device="cpu", batch_size=batch_size, workers=0, progress=False, seed=kw.pop("seed", 0))
    return export_suite(images, suite, STANDARD, out, runtime=runtime, threads=threads, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def exported(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    run_export(images, out)
    return out


def test_layout_is_the_released_imagenet_c_tree_of_224px_jpegs(exported, images):
    manifest = json.loads((exported / "manifest.json").read_text())
    files = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*.JPEG"))
    expected = sorted(f"{c}/{s}/{i.key.split('/')[0]}/{Path(i.key).stem}.JPEG" for c in ("gaussian_noise", "contrast")
                      for s in (1, 3) for i in images.items)
    assert files == expected and not (exported / "clean").exists()
    for f in files[:4]:
        with Image.open(exported / f) as img:
            assert (img.format, img.size, img.mode) == ("JPEG", (224, 224), "RGB")
    assert manifest["status"] == "complete" and manifest["n_files"] == len(files) == 24
    assert (manifest["seed"], manifest["jpeg_quality"], manifest["severities"]) == (0, 85, [1, 3])
    assert [c["name"] for c in manifest["corruptions"]] == ["gaussian_noise", "contrast"]
    assert manifest["preprocessing"]["resize_size"] == 256 and "torch=" in manifest["versions"]
    assert manifest["images"]["count"] == 6 and manifest["git_commit"]
    report = verify_export(exported)
    assert report.ok and report.checked == 24, report.summary()


def test_exported_files_decode_to_the_faithful_jpeg_evaluation(exported, images):
    """Bit for bit: the same seeds, the same truncation, the same encoder as ``jpeg_round_trip``."""
    from torchvision.io import decode_jpeg, read_file

    batch = next(iter(make_loader(images, STANDARD, 6, 0)))
    x = batch["images"].float().div(255.0)
    for cell in build_cells(suite_of("suite=imagenet_c", *SMALL, "suite.faithful_jpeg=true"))[1:]:
        expected = corrupt_batch(cell, x, batch["image_ids"], 0)
        for k, item in enumerate(images.items):
            path = exported / cell.name / str(cell.severity) / f"{item.key.split('/')[0]}/{Path(item.key).stem}.JPEG"
            assert torch.equal(decode_jpeg(read_file(str(path))).float().div(255.0), expected[k]), path


def test_export_is_deterministic_and_independent_of_batch_size(exported, images, tmp_path):
    run_export(images, tmp_path / "again", batch_size=4, threads=1)
    assert (tmp_path / "again" / "manifest_files.csv").read_bytes() == (exported / "manifest_files.csv").read_bytes()


def test_a_killed_export_resumes_to_the_same_files(exported, images, tmp_path, monkeypatch):
    real, calls = export._write_file, []

    def dies_after_seven(path, data):
        calls.append(path)
        if len(calls) > 7:
            raise KeyboardInterrupt("killed")
        real(path, data)

    monkeypatch.setattr(export, "_write_file", dies_after_seven)
    with pytest.raises(KeyboardInterrupt):
        run_export(images, tmp_path, batch_size=4)
    monkeypatch.setattr(export, "_write_file", lambda path, data: (calls.append(path), real(path, data)))
    written_before = len(list(tmp_path.rglob("*.JPEG")))
    calls.clear()
    run_export(images, tmp_path, batch_size=4)
    assert 0 < written_before < 24 and len(calls) == 24 - written_before  # finished files are kept
    assert (tmp_path / "manifest_files.csv").read_bytes() == (exported / "manifest_files.csv").read_bytes()
    assert not [p for p in tmp_path.rglob(".*") if p.name != "manifest.json"]  # no temporary files, no parts
    calls.clear()
    run_export(images, tmp_path)  # a finished export: nothing to do
    assert not calls and verify_export(tmp_path).ok


def test_verify_names_changed_missing_and_extra_files(exported, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(exported, out)
    files = sorted(out.rglob("*.JPEG"))
    files[0].write_bytes(files[0].read_bytes()[:-10])
    files[1].unlink()
    (files[2].parent / "stray.JPEG").write_bytes(b"x")
    report = verify_export(out)
    rel = [f.relative_to(out).as_posix() for f in files[:3]]
    assert not report.ok and report.mismatched == [rel[0]] and report.missing == [rel[1]]
    assert report.extra == [str(Path(rel[2]).parent / "stray.JPEG")]


@pytest.mark.parametrize("overrides", [
    ("suite=sensor", "suite.corruptions=[sensor_noise,double_jpeg]", "suite.severities=[2]"),
    ("suite=plugin_example", "suite.severities=[2]"),  # brightness and two _target_ entries
])
def test_sensor_and_plugin_suites_export(images, tmp_path, overrides):
    suite = suite_of(*overrides)
    manifest = run_export(images, tmp_path, suite=suite)
    names = [c["name"] for c in manifest["corruptions"]]
    assert manifest["n_files"] == 6 * len(names) and all((tmp_path / n / "2").is_dir() for n in names)
    assert verify_export(tmp_path).ok
    if "plugin" in overrides[0]:
        assert {"vignette", "color_cast"} <= set(names)
        assert any(c["fn"] == "examples.my_corruptions.vignette" for c in manifest["corruptions"])


def test_clashing_names_and_unlabelled_images_are_refused(tmp_path):
    folder = tmp_path / "val" / "n01440764"
    folder.mkdir(parents=True)
    for name in ("a.JPEG", "a.png"):
        Image.new("RGB", (32, 32)).save(folder / name)
    clash = build_dataset(DataSpec(name="imagenet_folder", root=str(tmp_path / "val")))
    with pytest.raises(ExportError, match="would both be written as n01440764/a.JPEG"):
        run_export(clash, tmp_path / "out")
    with pytest.raises(ExportError, match="no ImageNet label"):
        run_export(build_dataset(DataSpec(name="unlabelled", root=str(tmp_path / "val"))), tmp_path / "out")


def main_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "task=export", "model=tiny_cnn", "runtime.workers=0",
            "runtime.progress=false", *args]


def one_error_line(returncode: int, stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """``main.py ARGS`` without a new interpreter: the task on the composed config, its errors turned into one line
    as the CLI does (rc 2 for bad input)."""
    from robustbench_in.cli import is_user_error, one_line_error
    from robustbench_in.tasks import TASKS

    try:
        TASKS["export"](compose_config(*main_cmd(*args)[3:]))
        code = 0
    except Exception as err:  # noqa: BLE001 — anything but bad input fails the test
        assert is_user_error(err), repr(err)
        print(f"error: {one_line_error(err)}", file=sys.stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_refuses_an_unwritable_or_foreign_out_dir_in_one_line(sample_root, exported, tmp_path):
    data = (f"data.root={sample_root}", "data.max_images=6", "suite=imagenet_c", *SMALL)
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = {"is not writable": main_cmd(*data, f"export.out_dir={blocker / 'sub'}"),
             "holds another export (seed 0 vs 1": main_cmd(*data, f"export.out_dir={exported}", "runtime.seed=1")}
    procs = {m: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m, c in cases.items()}
    for message, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert message in one_error_line(proc.returncode, err)


def test_task_export_runs_verifies_replaces_and_names_bad_input(sample_root, exported, tmp_path, capsys):
    data = (f"data.root={sample_root}", "data.max_images=6", "suite=imagenet_c", *SMALL)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    for message, args in {"needs export.out_dir": data,
                          "holds files but no manifest.json": (*data, f"export.out_dir={tmp_path / 'photos'}"),
                          "holds no manifest.json": ("export.verify=true", f"export.out_dir={tmp_path / 'photos'}"),
                          "export.threads=0 must be >= 1": (*data, "export.out_dir=x", "export.threads=0")}.items():
        assert message in one_error_line(*in_process(capsys, *args)[::2])
    out = tmp_path / "out"
    code, stdout, _ = in_process(capsys, *data, f"export.out_dir={out}")
    assert code == 0 and "export: 24 files" in stdout
    assert (out / "manifest_files.csv").read_bytes() == (exported / "manifest_files.csv").read_bytes()
    code, stdout, _ = in_process(capsys, "export.verify=true", f"export.out_dir={out}")
    assert code == 0 and "verified 24 files" in stdout
    next(out.rglob("*.JPEG")).write_bytes(b"changed")
    assert "1 differ" in one_error_line(*in_process(capsys, "export.verify=true", f"export.out_dir={out}")[::2])
    code, _, err = in_process(capsys, *data, f"export.out_dir={out}", "runtime.seed=1", "export.overwrite=true",
                              "suite.severities=[2]")
    assert code == 0, err
    assert sorted(p.name for p in (out / "contrast").iterdir()) == ["2"]
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1 and verify_export(out).ok
