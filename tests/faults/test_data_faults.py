"""Data that must never be scored as garbage or crash a run: high-bit-depth images, decompression bombs, hidden
folders, and label files that are wrong in every way a user manages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_in.data import DataSpec, build_dataset, make_loader
from robustbench_in.data.datasets import DatasetError
from robustbench_in.data.loader import open_rgb
from robustbench_in.data.preprocessing import STANDARD

from .hostile_cli import GOOD_WNID, _bomb_png, _png16, photo, write_bad_images, write_label_files


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("bad")
    return root, write_bad_images(root)


def _decoded(images) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """name -> decoded uint8 crop, and name -> skip reason, through the evaluation loader."""
    kept, skipped = {}, {}
    for batch in make_loader(images, STANDARD, batch_size=4, workers=0):
        for path, reason in batch["skipped"]:
            skipped[Path(path).stem] = reason
        if "images" in batch:
            for index, crop in zip(batch["index"].tolist(), batch["images"]):
                kept[images.items[index].path.stem] = crop.numpy()
    return kept, skipped


def test_bad_image_folder_scores_what_is_faithful_and_skips_the_rest(bad_folder):
    root, expected = bad_folder
    images = build_dataset(DataSpec(name="imagenet_folder", root=str(root)))
    assert not any(p.name.startswith(".") for i in images.items for p in (i.path, *i.path.parents[:2]))
    kept, skipped = _decoded(images)
    assert sorted(kept) == sorted(expected["scored"].split())
    assert sorted(skipped) == sorted(expected["skipped"].split())
    assert "data.max_pixels" in skipped["bomb"] and "unknown scale" in skipped["float_hdr"]
    reference = kept["good_0"].astype(np.float64).mean(0)  # the 8-bit photo, gray
    for name in ("gray16", "float01", "rgb16"):
        gray = kept[name].astype(np.float64).mean(0)
        assert np.abs(gray - reference).mean() < 4, name  # the same photo, not a white (or black) plane
    assert (kept["gray16"] == 255).mean() < 0.01


def test_sixteen_bit_grayscale_is_scaled_by_its_range_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    _png16(tmp_path / "ramp.png", ramp)
    decoded = np.asarray(open_rgb(tmp_path / "ramp.png"))
    assert decoded.shape == (64, 64, 3) and (decoded[..., 0] == decoded[..., 2]).all()
    assert np.abs(decoded[..., 0].astype(int) - np.round(ramp / 257)).max() <= 1


def test_a_declared_pixel_count_above_the_cap_is_refused_before_decoding(tmp_path):
    _bomb_png(tmp_path / "bomb.png", side=3000)  # 9 M pixels
    with pytest.raises(ValueError, match="3000x3000 pixels is more than data.max_pixels=1000000"):
        open_rgb(tmp_path / "bomb.png", max_pixels=1_000_000)
    assert open_rgb(tmp_path / "bomb.png", max_pixels=10_000_000).size == (3000, 3000)
    spec = DataSpec(name="imagenet_folder", root=str(tmp_path), max_pixels=123)
    assert spec.max_pixels == 123
    with pytest.raises(DatasetError, match="data.max_pixels=0"):
        DataSpec(name="embedded", max_pixels=0)


def test_hidden_folders_and_files_are_not_data(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "a.JPEG")
    for folder in (tmp_path / GOOD_WNID, tmp_path / ".ipynb_checkpoints", tmp_path / GOOD_WNID / ".cache"):
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo()).save(folder / "a.JPEG")
    (tmp_path / GOOD_WNID / "._a.JPEG").write_bytes(b"\x00\x05\x16\x07")
    found = build_dataset(DataSpec(name="imagenet_folder", root=str(tmp_path)))
    assert [i.key for i in found.items] == [f"{GOOD_WNID}/a.JPEG"]
    unlabelled = build_dataset(DataSpec(name="unlabelled", root=str(tmp_path)))
    assert sorted(i.key for i in unlabelled.items) == ["a.JPEG", f"{GOOD_WNID}/a.JPEG"]


@pytest.fixture(scope="module")
def label_files(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("flat")
    return root / "flat", write_label_files(root / "flat")


@pytest.mark.parametrize("name, message", [
    ("duplicate.txt", r"duplicate.txt:2: ILSVRC2012_val_00000001.JPEG is labelled 282 here but 281 on line 1"),
    ("empty_label.csv", r"empty_label.csv:2: the label is empty"),
    ("wrong_header.csv", r"wrong_header.csv:1: header 'ImageId,Label'; expected 'ImageId,PredictionString'"),
    ("empty.csv", r"empty.csv holds no labels"),
    ("header_only.csv", r"header_only.csv holds no labels"),
    ("binary.txt", r"binary.txt is not a text labels file"),
    ("unknown_wnid.txt", r"unknown_wnid.txt:1: label 'n99999999' is neither"),
    ("out_of_range.txt", r"out_of_range.txt:1: label '1000' is neither"),
])
def test_a_wrong_labels_file_is_one_line_naming_file_and_line(label_files, name, message):
    root, files = label_files
    with pytest.raises(DatasetError, match=message) as err:
        build_dataset(DataSpec(name="imagenet_flat", root=str(root), labels_file=str(files[name])))
    assert "\n" not in str(err.value)


def test_a_good_labels_file_and_a_file_listed_twice_with_one_label(label_files, tmp_path):
    root, files = label_files
    found = build_dataset(DataSpec(name="imagenet_flat", root=str(root), labels_file=str(files["ok.txt"])))
    assert [i.label for i in found.items] == [281, 281]
    twice = tmp_path / "twice.csv"
    twice.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n02123045 1 2 3 4\n"
                     "ILSVRC2012_val_00000001,n02123045 5 6 7 8\n")  # LOC lists one row per box
    found = build_dataset(DataSpec(name="imagenet_flat", root=str(root), labels_file=str(twice)))
    assert [i.label for i in found.items] == [281]
