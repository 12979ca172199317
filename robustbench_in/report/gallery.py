"""The gallery: one image under every corruption of a suite at each severity, as a labelled PNG grid.

So a user sees what a suite tests before spending hours on it (``python main.py task=gallery suite=...``).
The image is decoded with the model's own geometry and corrupted with the seeds the engine would use for it
(``derive_seeds`` with the image id), so each tile is what the model sees in that cell (before the optional
faithful-JPEG step). Tiles are drawn at the image's own pixel size (up to ``MAX_TILE``) at exact pixel
positions, so the grid is sharp and :func:`grid_layout` says where every tile is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextPath
from PIL import Image

from corruptions.registry import Corruption, apply_corruption, check_severity
from corruptions.rng import derive_seeds
from robustbench_in.data.datasets import ImageList
from robustbench_in.data.loader import ImageDataset
from robustbench_in.data.preprocessing import Preprocessing

DPI = 100
MAX_TILE = 256  # px: larger inputs (384, 512) are drawn downscaled
GAP = 6  # px between tiles
TITLE_H, HEADER_H, MARGIN = 34, 26, 10  # px
FONT_SIZE = 10


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of the gallery: figure size and each tile's box (left, top, width, height)."""

    rows: int
    cols: int
    tile_w: int
    tile_h: int
    label_w: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        width = self.label_w + self.cols * self.tile_w + (self.cols - 1) * GAP + MARGIN
        height = TITLE_H + HEADER_H + self.rows * self.tile_h + (self.rows - 1) * GAP + MARGIN
        return width, height

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        return (self.label_w + col * (self.tile_w + GAP), TITLE_H + HEADER_H + row * (self.tile_h + GAP),
                self.tile_w, self.tile_h)


def text_width_px(text: str, bold: bool = True) -> int:
    """Rendered width of a row label in pixels (so long plug-in names are never cut off)."""
    path = TextPath((0, 0), text, size=FONT_SIZE, prop=FontProperties(weight="bold" if bold else "normal"))
    return int(math.ceil(path.get_extents().width * DPI / 72))


def grid_layout(rows: int, cols: int, image_hw: tuple[int, int], names: list[str]) -> GridLayout:
    h, w = image_hw
    scale = min(1.0, MAX_TILE / max(h, w))
    label_w = max(120, max((text_width_px(n) for n in names), default=0) + 24)
    return GridLayout(rows=rows, cols=cols, tile_w=max(1, round(w * scale)), tile_h=max(1, round(h * scale)),
                      label_w=label_w)


def decode_image(images: ImageList, preprocessing: Preprocessing, image_index: int) -> tuple[torch.Tensor, int, str]:
    """(float image (1, 3, H, W) in [0, 1], image id, key) of one dataset image, decoded as the engine does."""
    if not 0 <= image_index < len(images.items):
        raise ValueError(f"gallery.image={image_index} is out of range: {images.name} has {len(images.items)} images")
    sample = ImageDataset(images, preprocessing)[image_index]
    if "skipped" in sample:
        path, reason = sample["skipped"]
        raise ValueError(f"gallery.image={image_index}: {path} cannot be read ({reason}); pick another index")
    return sample["image"].unsqueeze(0).float().div_(255.0), int(sample["image_id"]), images.items[image_index].key


def corrupted_tiles(image: torch.Tensor, image_id: int, corruptions: list[Corruption], severities: list[int],
                    seed: int) -> list[list[torch.Tensor]]:
    """rows[c][s]: the image under corruption c at severity s, seeded exactly as the engine seeds it."""
    ids = torch.tensor([image_id], dtype=torch.int64)
    return [[apply_corruption(c, image, s, derive_seeds(seed, ids, c.name, s))[0] for s in severities]
            for c in corruptions]


def write_gallery(images: ImageList, preprocessing: Preprocessing, corruptions: list[Corruption],
                  severities: list[int], out: Path, image_index: int = 0, seed: int = 0) -> Path:
    """Draw image ``image_index`` clean and under every corruption x severity; returns the PNG path.

    Rows are corruptions (labelled with name and category), columns clean then each severity."""
    if not corruptions:
        raise ValueError("the gallery needs corruptions: pick a suite with some (suite=imagenet_c) or set "
                         "suite.corruptions=[...]")
    severities = [check_severity(s) for s in severities]
    if not severities:
        raise ValueError("the gallery needs at least one severity (suite.severities=[1,2,3,4,5])")
    image, image_id, key = decode_image(images, preprocessing, image_index)
    rows = corrupted_tiles(image, image_id, corruptions, severities, seed)
    layout = grid_layout(len(corruptions), 1 + len(severities), tuple(image.shape[-2:]),
                         [c.name for c in corruptions])
    width, height = layout.size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    fig.text(MARGIN / width, 1 - (TITLE_H / 2) / height, f"{images.name}: {key}  ({image.shape[-1]}×"
             f"{image.shape[-2]} px, run seed {seed})", ha="left", va="center", fontsize=FONT_SIZE + 1,
             fontweight="bold")
    headers = ["clean"] + [f"severity {s}" for s in severities]
    for col, header in enumerate(headers):
        left, top, w, _ = layout.tile_box(0, col)
        fig.text((left + w / 2) / width, 1 - (top - HEADER_H / 2) / height, header, ha="center", va="center",
                 fontsize=FONT_SIZE)
    clean = image[0]
    for row, (corruption, tiles) in enumerate(zip(corruptions, rows)):
        left, top, w, h = layout.tile_box(row, 0)
        y_mid = 1 - (top + h / 2) / height
        fig.text((left - 8) / width, y_mid, corruption.name, ha="right", va="bottom", fontsize=FONT_SIZE,
                 fontweight="bold")
        fig.text((left - 8) / width, y_mid, corruption.category, ha="right", va="top", fontsize=FONT_SIZE - 1,
                 color="0.4")
        for col, tile in enumerate([clean, *tiles]):
            left, top, w, h = layout.tile_box(row, col)
            ax = fig.add_axes((left / width, 1 - (top + h) / height, w / width, h / height))
            ax.imshow(tile.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="antialiased", aspect="auto")
            ax.set_axis_off()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.draw()  # RGB without alpha, moderate compression: a 19 x 6 grid is ~7 Mpx
    Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).save(out, format="PNG", compress_level=4)
    return out
