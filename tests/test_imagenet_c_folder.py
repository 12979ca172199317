"""data=imagenet_c_folder: the released ImageNet-C tree read as it is, one cell per folder, next to its clean cell."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from corruptions import apply_corruption
from robustbench_in.data import DataSpec, build_dataset, make_loader
from robustbench_in.data.datasets import DatasetError
from robustbench_in.data.preprocessing import STANDARD, Preprocessing

REPO = Path(__file__).resolve().parents[1]
CELLS = [("contrast", 1), ("contrast", 3), ("gaussian_noise", 1), ("gaussian_noise", 3)]


def _val_folder(sample_root: Path, dest: Path, n_classes: int = 3) -> Path:
    """A val folder of the first n classes of the shared samples (one image each)."""
    for wnid_dir in sorted(p for p in sample_root.iterdir() if p.is_dir())[:n_classes]:
        shutil.copytree(wnid_dir, dest / wnid_dir.name)
    return dest


def _tree(val: Path, dest: Path, cells=CELLS) -> Path:
    """An ImageNet-C-style tree of ``val``: the standard 224 crop, corrupted, saved as quality-85 JPEG."""
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(val)))
    batch = next(iter(make_loader(images, STANDARD, batch_size=64, workers=0)))
    x = batch["images"].float() / 255
    for name, severity in cells:
        out = apply_corruption(name, x, severity, torch.arange(len(x)))
        for item, img in zip(images.items, (out * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()):
            path = dest / name / str(severity) / item.key
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path.with_suffix(".JPEG"), quality=85)
    return dest


@pytest.fixture(scope="module")
def folders(sample_root, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("inc")
    val = _val_folder(sample_root, root / "val")
    return val, _tree(val, root / "tree")


def _main(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args, "runtime.workers=0", "runtime.progress=false"],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_each_folder_is_a_cell_with_wnid_labels_and_val_keys(folders):
    val, tree = folders
    images = build_dataset(DataSpec(name="imagenet_c_folder", root=str(tree), clean_root=str(val)))
    clean = build_dataset(DataSpec(name="imagenet_folder", root=str(val)))
    assert sorted(images.tree) == sorted(CELLS)
    assert [i.label for i in images.items] == [i.label for i in clean.items]
    for part in images.tree.values():
        assert [i.label for i in part.items] == [i.label for i in clean.items]
        # keys (and so image ids and seeds) pair each file with its clean image
        assert [Path(i.key).stem for i in part.items] == [Path(i.key).stem for i in clean.items]
    without_clean = build_dataset(DataSpec(name="imagenet_c_folder", root=str(tree)))
    assert without_clean.items == [] and "clean_root" in without_clean.notes[0]
    auto = build_dataset(DataSpec(name="auto", root=str(tree)))
    assert auto.tree is not None and "imagenet_c_folder" in auto.notes[0]


def test_files_are_read_as_they_are(folders):
    """No resize from 256 and crop: the model sees the file's own 224 x 224 pixels."""
    val, tree = folders
    part = build_dataset(DataSpec(name="imagenet_c_folder", root=str(tree))).tree[("contrast", 3)]
    as_is = STANDARD.override(Preprocessing(resize_size=STANDARD.input_size))
    decoded = next(iter(make_loader(part, as_is, batch_size=8, workers=0)))["images"]
    on_disk = np.stack([np.asarray(Image.open(i.path).convert("RGB")) for i in part.items])
    assert np.array_equal(decoded.permute(0, 2, 3, 1).numpy(), on_disk)


def test_cli_writes_file_cells_next_to_the_clean_cell(folders, tmp_path):
    val, tree = folders
    proc = _main("model=tiny_cnn", "data=imagenet_c_folder", f"data.root={tree}", f"data.clean_root={val}",
                 f"results_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(tmp_path / "results.csv").sort_values(["corruption", "severity"])
    assert list(zip(rows["corruption"], rows["severity"])) == [("clean", 0)] + CELLS
    assert set(rows["dataset"]) == {"imagenet_c_folder"} and (rows["n"] == 3).all()
    files = rows[rows["corruption"] != "clean"]
    assert set(files["source"]) == {"files"} and set(files["jpeg_mode"]) == {"files"}
    assert rows[rows["corruption"] == "clean"]["source"].iloc[0] == "on_the_fly"
    assert set(files["category"]) == {"noise", "digital"}
    assert "resize224-center224" in files["preprocessing"].iloc[0]  # as they are
    assert "resize256-center224" in rows[rows["corruption"] == "clean"]["preprocessing"].iloc[0]

    narrowed = _main("model=tiny_cnn", "data=imagenet_c_folder", f"data.root={tree}", "suite=imagenet_c",
                     "suite.corruptions=[contrast]", "suite.severities=[3]", f"results_dir={tmp_path / 'b'}",
                     cwd=tmp_path)
    assert narrowed.returncode == 0, narrowed.stderr
    assert list(pd.read_csv(tmp_path / "b" / "results.csv")["corruption"]) == ["contrast"]


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_suite_cell_missing_from_the_tree_is_one_line_listing_what_is_there(folders, tmp_path):
    _, tree = folders
    line = _one_line_error(_main("model=tiny_cnn", "data=imagenet_c_folder", f"data.root={tree}", "suite=imagenet_c",
                                 "suite.corruptions=[contrast,fog]", "suite.severities=[3,5]",
                                 f"results_dir={tmp_path}", cwd=tmp_path))
    assert "contrast/5" in line and "fog/3" in line and "contrast, gaussian_noise" in line


@pytest.mark.parametrize("damage, message", [
    ("rm -r contrast/3", "severity folder(s) missing: contrast/3"),
    ("mkdir contrast/3/n99999999", "contrast/3/ holds folder(s) that are not ImageNet wnids: n99999999"),
    ("touch contrast/3/stray.JPEG", "contrast/3/ holds files at the wrong depth: stray.JPEG"),
    ("mkdir contrast/high", "contrast/ holds high"),
    ("touch stray.JPEG", "holds files at the wrong depth: stray.JPEG"),
    ("mkdir n01440764", "it is a val folder, not an ImageNet-C tree"),
])
def test_a_mislaid_tree_is_one_line_naming_what_was_found(folders, tmp_path, damage, message):
    _, tree = folders
    copy = shutil.copytree(tree, tmp_path / "tree")
    command, target = damage.split(" ", 1) if not damage.startswith("rm") else ("rm", damage.split()[-1])
    path = copy / target
    {"rm": lambda: shutil.rmtree(path), "mkdir": lambda: path.mkdir(parents=True),
     "touch": lambda: path.write_bytes(b"")}[command]()
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        build_dataset(DataSpec(name="imagenet_c_folder", root=str(copy)))
    assert "\n" not in str(err.value)


def test_an_export_read_back_scores_as_on_the_fly_with_faithful_jpeg(sample_root, tmp_path):
    """Issue 12's check: task=export, then data=imagenet_c_folder, gives the top-1 error of on-the-fly evaluation
    with faithful_jpeg=true within 1 point per cell (EfficientNet-Lite0, 60 shared sample images)."""
    cells = ["suite=imagenet_c", "suite.corruptions=[gaussian_noise,fog,contrast]", "suite.severities=[3]"]
    data = [f"data.root={sample_root}", "data.max_images=60"]
    exported = _main("task=export", *data, *cells, f"export.out_dir={tmp_path / 'c'}", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    from_files = _main("data=imagenet_c_folder", f"data.root={tmp_path / 'c'}", f"results_dir={tmp_path / 'files'}",
                       cwd=tmp_path)
    on_the_fly = _main(*data, *cells, "suite.include_clean=false", f"results_dir={tmp_path / 'fly'}", cwd=tmp_path)
    assert from_files.returncode == 0 and on_the_fly.returncode == 0, from_files.stderr + on_the_fly.stderr
    files = pd.read_csv(tmp_path / "files" / "results.csv").set_index("corruption")
    fly = pd.read_csv(tmp_path / "fly" / "results.csv").set_index("corruption")
    assert sorted(files.index) == sorted(fly.index) == ["contrast", "fog", "gaussian_noise"]
    assert (files["n"] == 60).all() and set(fly["jpeg_mode"]) == {"faithful_q85"}
    assert ((files["top1_err"] - fly.loc[files.index, "top1_err"]).abs() <= 0.01).all(), (files, fly)
