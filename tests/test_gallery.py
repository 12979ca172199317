"""The gallery PNG: a rows x cols grid (corruptions x clean + severities), each tile the image the engine
would feed the model in that cell, labelled; plus ``python main.py task=gallery``'s code path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import get_corruption
from robustbench_in.data import STANDARD, ImageItem, ImageList, Preprocessing
from robustbench_in.evaluate import Cell, corrupt_batch
from robustbench_in.report.gallery import GAP, HEADER_H, TITLE_H, decode_image, grid_layout, write_gallery

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import examples.my_corruptions  # noqa: E402,F401  (registers vignette)

PRE = STANDARD.override(Preprocessing(input_size=64, resize_size=72))


@pytest.fixture
def images(tmp_path) -> ImageList:
    """Three small photos-to-be: gradients with a dark disc, of different sizes and aspect ratios."""
    items = []
    for i, (w, h) in enumerate([(120, 90), (80, 100), (96, 96)]):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x / w, y / h, 0.5 + 0.3 * np.sin(x / 5.0 + i)], axis=-1)
        rgb[(x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2] = (0.1, 0.05, 0.2)
        path = tmp_path / f"img{i}.png"
        Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
        items.append(ImageItem(path=path, label=i, key=path.name))
    return ImageList(name="synthetic", items=items, root=str(tmp_path))


def tiles(png: np.ndarray, layout, row: int, col: int) -> np.ndarray:
    left, top, w, h = layout.tile_box(row, col)
    return png[top:top + h, left:left + w].astype(np.float64) / 255.0


def test_gallery_grid_shows_each_cell_as_the_engine_makes_it(images, tmp_path):
    corruptions = [get_corruption(n) for n in ("brightness", "gaussian_noise", "vignette")]
    severities = [1, 3, 5]
    out = write_gallery(images, PRE, corruptions, severities, tmp_path / "sub" / "gallery.png", image_index=1, seed=7)
    assert out == tmp_path / "sub" / "gallery.png" and out.is_file()
    png = np.asarray(Image.open(out).convert("RGB"))
    layout = grid_layout(3, 4, (64, 64), [c.name for c in corruptions])
    assert (png.shape[1], png.shape[0]) == layout.size

    image, image_id, _ = decode_image(images, PRE, 1)
    ids = torch.tensor([image_id])
    clean = image[0].permute(1, 2, 0).numpy()
    for row, corruption in enumerate(corruptions):
        assert np.abs(tiles(png, layout, row, 0) - clean).mean() < 1 / 255, "column 0 is the clean image"
        for col, severity in enumerate(severities, start=1):
            cell = Cell(corruption.name, severity, corruption.category, corruption)
            expected = corrupt_batch(cell, image, ids, seed=7)[0].permute(1, 2, 0).numpy()
            diff = np.abs(tiles(png, layout, row, col) - expected).mean()
            assert diff < 1 / 255, f"tile ({row}, {col}) is not {corruption.name} s{severity} ({diff:.4f})"
            assert np.abs(expected - clean).mean() > 0.005  # so matching the tile means something

    left_labels = png[TITLE_H + HEADER_H:, :layout.tile_box(0, 0)[0] - 2]
    headers = png[TITLE_H:TITLE_H + HEADER_H - 2, layout.tile_box(0, 0)[0]:]
    assert (left_labels.min(axis=-1) < 80).sum() > 50, "row labels missing"
    assert (headers.min(axis=-1) < 80).sum() > 50, "column labels missing"
    gaps = png[TITLE_H + HEADER_H:, layout.tile_box(0, 1)[0] - GAP:layout.tile_box(0, 1)[0]]
    assert (gaps == 255).all(), "tiles overlap"


def test_grid_size_grows_with_rows_and_columns(images, tmp_path):
    sizes = {}
    for rows, severities in [(1, [2]), (2, [1, 2, 3, 4, 5])]:
        corruptions = [get_corruption(n) for n in ("contrast", "vignette")[:rows]]
        out = write_gallery(images, PRE, corruptions, severities, tmp_path / f"g{rows}.png")
        sizes[rows] = Image.open(out).size
        assert sizes[rows] == grid_layout(rows, 1 + len(severities), (64, 64), [c.name for c in corruptions]).size
    assert sizes[2][0] - sizes[1][0] == 4 * (64 + GAP) and sizes[2][1] - sizes[1][1] == 64 + GAP


def test_gallery_refuses_what_it_cannot_draw(images, tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        write_gallery(images, PRE, [get_corruption("fog")], [1], tmp_path / "g.png", image_index=3)
    with pytest.raises(ValueError, match="needs corruptions"):
        write_gallery(images, PRE, [], [1], tmp_path / "g.png")
    with pytest.raises(ValueError, match="severity"):
        write_gallery(images, PRE, [get_corruption("fog")], [6], tmp_path / "g.png")
    (tmp_path / "img0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot be read"):
        write_gallery(images, PRE, [get_corruption("fog")], [1], tmp_path / "g.png", image_index=0)


def test_task_gallery_draws_the_suite(tmp_path):
    """What ``python main.py task=gallery suite=plugin_example`` runs, in process."""
    from conftest import compose_config

    from robustbench_in.tasks import task_gallery

    cfg = compose_config("task=gallery", "model=tiny_cnn", "suite=plugin_example", "suite.severities=[1,5]",
                         f"results_dir={tmp_path}", "gallery.image=2")
    out = task_gallery(cfg)
    png = np.asarray(Image.open(out).convert("RGB"))
    layout = grid_layout(3, 3, (224, 224), ["brightness", "vignette", "color_cast"])
    assert out == tmp_path / "gallery.png" and (png.shape[1], png.shape[0]) == layout.size
    assert png.std() > 20, "the gallery is blank"
