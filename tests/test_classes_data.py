"""Class table and datasets: global labels by wnid, bad files skipped and reported, grayscale -> RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustbench_in.data import STANDARD, DataSpec, DatasetError, Preprocessing, imagenet_classes, make_loader
from robustbench_in.data import build_dataset as build_from_spec


def build_dataset(name: str, **keys):
    return build_from_spec(DataSpec(name=name, **keys))


def test_class_table_has_1000_unique_sorted_wnids():
    table = imagenet_classes()
    assert len(table) == 1000
    assert len(set(table.wnids)) == 1000
    assert list(table.wnids) == sorted(table.wnids)
    assert table.wnids[0] == "n01440764" and table.names[0] == "tench"
    assert table.label("n15075141") == 999


def _save(path: Path, mode: str = "RGB", size=(80, 60), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color if mode == "RGB" else 128).save(path, format="JPEG")
    return path


def test_subset_folder_keeps_global_labels(tmp_path):
    table = imagenet_classes()
    wnids = [table.wnids[5], table.wnids[500], table.wnids[999]]  # only 3 classes present
    for w in wnids:
        _save(tmp_path / w / f"{w}_1.JPEG")
    images = build_dataset("imagenet_folder", root=str(tmp_path))
    assert [i.label for i in images.items] == [5, 500, 999]  # not 0, 1, 2 (folder enumeration order)


def test_bad_images_are_skipped_counted_and_listed(tmp_path):
    table = imagenet_classes()
    w = table.wnids[10]
    _save(tmp_path / w / "a_good.JPEG")
    _save(tmp_path / w / "b_gray.JPEG", mode="L")
    (tmp_path / w / "c_empty.JPEG").write_bytes(b"")
    truncated = tmp_path / w / "d_truncated.JPEG"
    data = _save(tmp_path / "tmp.JPEG", size=(400, 300)).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    images = build_dataset("imagenet_folder", root=str(tmp_path / w / ".."))
    assert len(images.items) == 4
    loader = make_loader(images, STANDARD.override(Preprocessing(input_size=32, resize_size=40)), batch_size=3,
                         workers=0)
    batches = list(loader)
    skipped = [s for b in batches for s in b["skipped"]]
    kept = torch.cat([b["images"] for b in batches if "images" in b])
    assert sorted(Path(p).name for p, _ in skipped) == ["c_empty.JPEG", "d_truncated.JPEG"]
    assert all(reason for _, reason in skipped)
    assert kept.shape == (2, 3, 32, 32) and kept.dtype == torch.uint8
    good_rgb, gray_rgb = kept[0].float(), kept[1]
    assert good_rgb[0].mean() > 150 and good_rgb[1].mean() < 80  # the red image stays red, in dataset order
    assert torch.equal(gray_rgb[0], gray_rgb[1]) and torch.equal(gray_rgb[1], gray_rgb[2])  # grayscale -> RGB


def test_missing_or_wrong_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="data.root is not set"):
        build_dataset("imagenet_folder", root=None)
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset("imagenet_folder", root=str(tmp_path / "nope"))
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError, match="not ImageNet wnids"):
        build_dataset("imagenet_folder", root=str(tmp_path))


def test_flat_layout_with_labels_file(tmp_path):
    table = imagenet_classes()
    for k in range(3):
        _save(tmp_path / "val" / f"ILSVRC2012_val_{k:08d}.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"ILSVRC2012_val_00000000.JPEG 7\nILSVRC2012_val_00000001.JPEG {table.wnids[42]}\n")
    images = build_dataset("imagenet_flat", root=str(tmp_path / "val"), labels_file=str(labels))
    assert [i.label for i in images.items] == [7, 42]
    assert images.notes and "1 images without a label" in images.notes[0]


def test_embedded_default_has_real_photos_with_labels():
    images = build_dataset("embedded")
    assert len(images.items) >= 5
    assert all(i.path.is_file() for i in images.items)
    assert len({i.image_id for i in images.items}) == len(images.items)


def test_geometry_matches_resize_then_center_crop():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8))
    crop = STANDARD.geometry(img)
    resized = img.resize((426, 256), Image.BILINEAR)  # int(256 * 500 / 300) = 426
    expected = np.asarray(resized)[16:240, 101:325]  # round((426 - 224) / 2) = 101
    assert crop.shape == (224, 224, 3)
    assert np.array_equal(crop, expected)


def test_tiny_images_are_upsampled(sample_root):
    """The sample set holds an image only 56 px wide; it must still give a full crop."""
    small = None
    for f in sorted(sample_root.glob("*/*.JPEG")):
        with Image.open(f) as im:
            if min(im.size) < 100:
                small = f
                break
    if small is None:
        pytest.skip("no small image in the sample set")
    with Image.open(small) as im:
        crop = STANDARD.geometry(im.convert("RGB"))
    assert crop.shape == (224, 224, 3)


def test_max_images_counts_and_rejects_what_is_not_a_count(tmp_path):
    table = imagenet_classes()
    for k in range(3):
        _save(tmp_path / table.wnids[k] / f"{k}.JPEG")
    assert len(build_dataset("imagenet_folder", root=str(tmp_path), max_images=2).items) == 2
    assert len(build_dataset("imagenet_folder", root=str(tmp_path), max_images=None).items) == 3
    for bad in (0, -1):
        with pytest.raises(DatasetError, match=f"data.max_images={bad} is not a count"):
            DataSpec(name="imagenet_folder", root=str(tmp_path), max_images=bad)


def test_auto_is_the_embedded_photos_or_the_given_folder(tmp_path):
    """``data.root=DIR`` without ``data=`` reads DIR (a wnid folder, or flat with a labels file)."""
    assert build_dataset("auto").name == "embedded"
    _save(tmp_path / "val" / "n01440764" / "a.JPEG")
    folder = build_dataset("auto", root=str(tmp_path / "val"))
    assert folder.name == "imagenet_folder" and [i.label for i in folder.items] == [0]
    assert "reading it as imagenet_folder" in folder.notes[0]
    _save(tmp_path / "flat" / "x.JPEG")
    (tmp_path / "labels.txt").write_text("x.JPEG 3\n")
    flat = build_dataset("auto", root=str(tmp_path / "flat"), labels_file=str(tmp_path / "labels.txt"))
    assert flat.name == "imagenet_flat" and [i.label for i in flat.items] == [3]
    with pytest.raises(DatasetError, match="data.labels_file is set but data.root is not"):
        build_dataset("auto", labels_file=str(tmp_path / "labels.txt"))
