"""Natural-shift test sets: their real folder layouts, class subsets, the logit restriction, ObjectNet's maps and
border, and one-line errors for trees laid out wrong. Trees are built in tmp_path from the shared sample images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from robustbench_in.data import STANDARD, DataSpec, DatasetError, Preprocessing, build_dataset, imagenet_classes
from robustbench_in.data import natural
from robustbench_in.data.loader import ImageDataset, decode
from robustbench_in.evaluate import Cell, EvalContext, ResultStore, Runtime, evaluate
from robustbench_in.models.registry import ModelEntry

REPO = Path(__file__).resolve().parents[1]
TABLE = imagenet_classes()
CTX = EvalContext(dataset_name="t", backend="test", versions="", git_commit="", model_identity={"m": "fixed"})
CLEAN = [Cell("clean", 0, "clean")]


def _build(name: str, root: Path, **keys):
    return build_dataset(DataSpec(name=name, root=str(root), **keys))


def _sample(sample_root: Path, wnid: str) -> Path:
    return next((sample_root / wnid).glob("*.JPEG"))


def _place(src: Path, dst: Path) -> Path:
    """A sample image at ``dst`` (a link where the file system allows, else a copy): never in the repository."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def _sample_wnids(sample_root: Path, name: str) -> list[str]:
    """Sample classes (one image each, even class indices) that belong to a 200-class set."""
    return [w for w in natural.subset_wnids(name) if (sample_root / w).is_dir()]


def _one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ------------------------------------------------------------------------------------------ class lists


def test_subset_lists_are_200_valid_unique_wnids_and_differ():
    r, a = natural.subset_wnids("imagenet_r"), natural.subset_wnids("imagenet_a")
    for wnids in (r, a):
        assert len(wnids) == 200 and len(set(wnids)) == 200 and list(wnids) == sorted(wnids)
        assert all(w in TABLE.index_of for w in wnids)
    assert set(r) != set(a) and 0 < len(set(r) & set(a)) < 200
    # pinned against the sources: imagenet_r eval.py's commented index list, natural-adv-examples' indices_in_1k
    assert natural.subset_indices("imagenet_r")[:8] == (1, 2, 4, 6, 8, 9, 11, 13)
    assert natural.subset_indices("imagenet_r")[-4:] == (980, 981, 983, 988)
    assert natural.subset_indices("imagenet_a")[:6] == (6, 11, 13, 15, 17, 22)
    assert natural.subset_indices("imagenet_a")[-4:] == (984, 986, 987, 988)


def test_subset_list_files_cite_their_source():
    for name, repo in (("imagenet_r", "hendrycks/imagenet-r"), ("imagenet_a", "hendrycks/natural-adv-examples")):
        header = [line for line in (REPO / "robustbench_in/data" / natural.SUBSET_LISTS[name]).read_text()
                  .splitlines() if line.startswith("#")]
        assert any(repo in line and "eval.py" in line for line in header)


# ------------------------------------------------------------------------------------------ ImageNet-V2


def test_v2_labels_come_from_the_integer_folder_name(sample_root, tmp_path):
    """Folders "0", "2", "10", "100", "999": a string sort would put "10" and "100" before "2"."""
    src = sorted(sample_root.glob("*/*.JPEG"))
    for k, name in enumerate(["2", "10", "100", "0", "999"]):
        _place(src[k], tmp_path / name / f"img{k}.jpeg")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    images = _build("imagenet_v2", tmp_path)
    assert [(i.key.split("/")[0], i.label) for i in images.items] == [
        ("0", 0), ("2", 2), ("10", 10), ("100", 100), ("999", 999)]
    assert images.protocol == "full" and images.class_subset is None
    string_order = {name: k for k, name in enumerate(sorted(["0", "2", "10", "100", "999"]))}
    assert string_order["2"] != 2  # what ImageFolder would have done


@pytest.mark.parametrize("bad", ["abc", "1000", "007", "-1"])
def test_v2_rejects_folders_that_are_not_class_indices(sample_root, tmp_path, bad):
    src = next(sample_root.glob("*/*.JPEG"))
    _place(src, tmp_path / "7" / "a.jpeg")
    _place(src, tmp_path / bad / "b.jpeg")
    with pytest.raises(DatasetError) as excinfo:
        _build("imagenet_v2", tmp_path)
    message = _one_line_error(excinfo)
    assert bad in message and "0-999" in message and "found 2 folders" in message


def test_v2_in_wnid_folders_points_to_imagenet_folder(sample_root, tmp_path):
    w = TABLE.wnids[0]
    _place(_sample(sample_root, w), tmp_path / w / "a.jpeg")
    with pytest.raises(DatasetError, match="data=imagenet_folder"):
        _build("imagenet_v2", tmp_path)


# ------------------------------------------------------------------------------------------ Sketch, R, A


def test_sketch_reads_wnid_folders_1000_way(sample_root, tmp_path):
    wnids = TABLE.wnids[0:6:2]
    for w in wnids:
        _place(_sample(sample_root, w), tmp_path / w / "s.JPEG")
    images = _build("imagenet_sketch", tmp_path)
    assert images.name == "imagenet_sketch" and images.protocol == "full" and images.class_subset is None
    assert [i.label for i in images.items] == [0, 2, 4]
    with pytest.raises(DatasetError, match="no subset"):
        _build("imagenet_sketch", tmp_path, protocol="subset")


@pytest.mark.parametrize("name", ["imagenet_r", "imagenet_a"])
def test_200_class_tree_keeps_global_labels_and_the_subset(sample_root, tmp_path, name):
    wnids = _sample_wnids(sample_root, name)[:5]
    for w in wnids:
        _place(_sample(sample_root, w), tmp_path / w / f"{w}.jpg")
    (tmp_path / "README.txt").write_text("the set's own readme")  # ImageNet-A ships one at the top
    (tmp_path / ".DS_Store").write_text("")
    images = _build(name, tmp_path)
    assert [i.label for i in images.items] == [TABLE.label(w) for w in wnids]
    assert images.class_subset == natural.subset_indices(name) and len(images.class_subset) == 200
    assert images.protocol == "subset"
    assert _build(name, tmp_path, protocol="full").protocol == "full"


def test_a_class_of_the_other_set_is_refused(sample_root, tmp_path):
    only_a = [w for w in _sample_wnids(sample_root, "imagenet_a") if w not in natural.subset_wnids("imagenet_r")]
    inside = _sample_wnids(sample_root, "imagenet_r")[0]
    for w in (inside, only_a[0]):
        _place(_sample(sample_root, w), tmp_path / w / "x.jpg")
    with pytest.raises(DatasetError) as excinfo:
        _build("imagenet_r", tmp_path)
    message = _one_line_error(excinfo)
    assert only_a[0] in message and inside not in message.split("(found")[0] and "imagenet_r_wnids.txt" in message


@pytest.mark.parametrize("layout", ["flat", "too_deep", "empty_classes"])
def test_mislaid_trees_get_one_line_errors(sample_root, tmp_path, layout):
    w = _sample_wnids(sample_root, "imagenet_r")[0]
    src = _sample(sample_root, w)
    if layout == "flat":  # images straight in the root
        _place(src, tmp_path / "a.jpg")
    elif layout == "too_deep":  # the archive's own top folder kept: root/imagenet-r/<wnid>/
        _place(src, tmp_path / "imagenet-r" / w / "a.jpg")
    else:  # the class folders hold another folder level
        _place(src, tmp_path / w / "more" / "a.jpg")
    with pytest.raises(DatasetError) as excinfo:
        _build("imagenet_r", tmp_path)
    message = _one_line_error(excinfo)
    expected = {"flat": "not in class folders", "too_deep": "imagenet-r", "empty_classes": "more/"}[layout]
    assert expected in message and "expected root/" in message


# ------------------------------------------------------------------------------------------ ObjectNet

#: a hand-written excerpt of objectnet-1.0/mappings in the real formats (labels and names as in the release)
FOLDERS = {"chair": "Chair", "alarm_clock": "Alarm clock", "banana": "Banana", "squeegee": "Squeegee"}
TO_IMAGENET = {"Chair": "barber chair; folding chair; rocking chair, rocker",
               "Alarm clock": "analog clock; digital clock", "Banana": "banana"}
NAMES = {423: "barber chair", 559: "folding chair", 765: "rocking chair, rocker", 409: "analog clock",
         530: "digital clock", 954: "banana", 517: "crane", 134: "crane"}


def _write_mappings(root: Path, to_imagenet: dict = TO_IMAGENET) -> None:
    """The four mapping files; imagenet_to_label_2012_v2 lists the classes in another order than torchvision's,
    so the pytorch_to_imagenet_2012_id.json indirection is exercised."""
    maps = root / "mappings"
    maps.mkdir(parents=True, exist_ok=True)
    line_of = {i: 999 - i for i in range(1000)}
    lines = [NAMES.get(999 - line, f"class {999 - line}") for line in range(1000)]
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(FOLDERS, indent=2))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(to_imagenet, indent=2))
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({str(i): v for i, v in line_of.items()}))
    (maps / "imagenet_to_label_2012_v2").write_text("\n".join(lines) + "\n")


def _framed_png(path: Path, size=(60, 44), border: int = 2, inner=(20, 160, 40)) -> Path:
    """A uniform picture inside a pure red frame of ``border`` pixels, like ObjectNet's."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[...] = (255, 0, 0)
    pixels[border:-border, border:-border] = inner
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def objectnet_root(tmp_path) -> Path:
    root = tmp_path / "objectnet-1.0"
    _write_mappings(root)
    for folder in ("alarm_clock", "banana", "chair", "squeegee"):
        for k in range(2):
            _framed_png(root / "images" / folder / f"{folder}{k}.png")
    return root


def test_objectnet_labels_alternatives_and_subset(objectnet_root):
    images = _build("objectnet", objectnet_root)
    by_folder = {i.key.split("/")[0]: (i.label, i.alt_labels) for i in images.items}
    assert by_folder == {"alarm_clock": (409, (530,)), "banana": (954, ()), "chair": (423, (559, 765))}
    assert len(images.items) == 6  # squeegee has no ImageNet counterpart: left out, and said so
    assert any("2 images of 1 ObjectNet classes" in n for n in images.notes)
    assert images.class_subset == (409, 423, 530, 559, 765, 954)
    assert images.protocol == "subset" and images.border_crop == natural.OBJECTNET_BORDER == 2
    assert _build("objectnet", objectnet_root, protocol="full").protocol == "full"


def test_objectnet_border_is_cut_in_decoding(objectnet_root):
    images = _build("objectnet", objectnet_root)
    rgb = np.asarray(decode(images.items[0], images))
    assert rgb.shape == (40, 56, 3) and (rgb == (20, 160, 40)).all()
    whole = Preprocessing(input_size=32, resize_size=32, interpolation="bilinear")  # no crop to hide the frame
    sample = ImageDataset(images, STANDARD.override(whole))[0]
    assert int(sample["image"][0].max()) < 60  # no red left on any edge
    images.border_crop = 0
    assert int(ImageDataset(images, STANDARD.override(whole))[0]["image"][0].max()) > 120  # the frame


@pytest.mark.parametrize("fault, expected", [
    ("no_mappings", "folder_to_objectnet_label.json, objectnet_to_imagenet_1k.json"),
    ("images_as_root", "point data.root at its parent"),
    ("unknown_name", "'Banana' maps to 'plantain'"),
    ("ambiguous_name", "names two ImageNet classes"),
    ("unknown_folder", "folder(s) pogo_stick are not in folder_to_objectnet_label.json"),
    ("bad_json", "not readable JSON"),
])
def test_objectnet_faults_are_one_line(objectnet_root, fault, expected):
    root = objectnet_root
    if fault == "no_mappings":
        for f in ("folder_to_objectnet_label.json", "objectnet_to_imagenet_1k.json"):
            (root / "mappings" / f).unlink()
    elif fault == "images_as_root":
        root = root / "images"
    elif fault in ("unknown_name", "ambiguous_name"):
        _write_mappings(root, {**TO_IMAGENET, "Banana": "plantain" if fault == "unknown_name" else "crane"})
    elif fault == "unknown_folder":
        _framed_png(root / "images" / "pogo_stick" / "p.png")
    else:
        (root / "mappings" / "objectnet_to_imagenet_1k.json").write_text("{not json")
    with pytest.raises(DatasetError) as excinfo:
        _build("objectnet", root)
    assert expected in _one_line_error(excinfo)


def test_objectnet_class_with_more_classes_than_the_loader_accepts(objectnet_root, monkeypatch):
    monkeypatch.setattr(natural, "MAX_ALT_LABELS", 1)
    with pytest.raises(DatasetError, match="'Chair' maps to 3 ImageNet classes"):
        _build("objectnet", objectnet_root)


# ------------------------------------------------------------------------------------------ scoring


class FixedLogits(nn.Module):
    """The same logits for every image, whatever it shows."""

    def __init__(self, favourites: dict[int, float]):
        super().__init__()
        logits = torch.zeros(1000)
        for index, value in favourites.items():
            logits[index] = value
        self.register_buffer("logits", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def _score(images, favourites: dict[int, float], store: Path) -> tuple[dict, pd.DataFrame]:
    entry = ModelEntry("fixed", FixedLogits(favourites), STANDARD.override(Preprocessing(input_size=32,
                       resize_size=36)), "test", "none")
    runtime = Runtime(device="cpu", batch_size=4, workers=0, shard_size=8, progress=False)
    results = ResultStore(store)
    rows, _ = evaluate(entry, images, CLEAN, runtime, results, CTX, log=lambda _: None)
    (row,) = rows
    return row, pd.read_parquet(results.root / results.rows()["records"].iloc[0])


def test_subset_protocol_restricts_the_logits(sample_root, tmp_path):
    """All the mass on class 0 (in neither 200-class set): wrong 1000-way, right on the subset's own classes."""
    wnids = _sample_wnids(sample_root, "imagenet_r")[:3]
    for w in wnids:
        _place(_sample(sample_root, w), tmp_path / "tree" / w / f"{w}.jpg")
    first = TABLE.label(wnids[0])
    favourites = {0: 100.0, first: 10.0, TABLE.label(wnids[1]): 5.0, TABLE.label(wnids[2]): 4.0}
    subset, records = _score(_build("imagenet_r", tmp_path / "tree"), favourites, tmp_path / "subset")
    assert subset["protocol"] == "subset" and subset["n"] == 3
    assert subset["top1_err"] == pytest.approx(2 / 3) and subset["top5_err"] == 0
    assert (records["pred"] == first).all()
    full, records = _score(_build("imagenet_r", tmp_path / "tree", protocol="full"), favourites, tmp_path / "full")
    assert full["protocol"] == "full" and full["top1_err"] == 1 and (records["pred"] == 0).all()
    assert full["cell_id"] != subset["cell_id"]


def test_objectnet_alternative_labels_count_as_correct(objectnet_root, tmp_path):
    """Folding chair (an alternative ImageNet class of Chair) above everything mapped, tench above all."""
    images = _build("objectnet", objectnet_root)
    subset, records = _score(images, {0: 100.0, 559: 10.0}, tmp_path / "subset")
    folder_of = {i.image_id: i.key.split("/")[0] for i in images.items}
    hits = records.assign(folder=records["image_id"].map(folder_of)).groupby("folder")["correct1"].all()
    assert hits.to_dict() == {"alarm_clock": False, "banana": False, "chair": True}
    assert subset["top1_err"] == pytest.approx(4 / 6)
    full, _ = _score(_build("objectnet", objectnet_root, protocol="full"), {0: 100.0, 559: 10.0}, tmp_path / "f")
    assert full["top1_err"] == 1 and full["protocol"] == "full"


def test_cli_run_on_a_200_class_tree_records_the_subset_protocol(sample_root, tmp_path):
    tree, out = tmp_path / "imagenet-r", tmp_path / "results"
    for w in _sample_wnids(sample_root, "imagenet_r")[:4]:
        _place(_sample(sample_root, w), tree / w / f"{w}.jpg")
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "data=imagenet_r", f"data.root={tree}",
                           "model=tiny_cnn", "suite=clean", "runtime.workers=0", "runtime.progress=false",
                           f"results_dir={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = out.rglob("results.csv")
    rows = pd.read_csv(results)
    assert rows["protocol"].tolist() == ["subset"] and rows["dataset"].tolist() == ["imagenet_r"]
    assert rows["n"].tolist() == [4]
