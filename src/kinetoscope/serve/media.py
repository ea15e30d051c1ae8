"""Preview images of a finished video: a thumbnail (WebP) and a spritesheet (a JPEG grid of frames)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from kinetoscope.io import write_image


def thumbnail(frames: np.ndarray) -> np.ndarray:
    """The middle frame: the first one is often just the given image or an unsettled start."""
    return frames[len(frames) // 2]


def spritesheet(frames: np.ndarray, *, max_tiles: int = 25, columns: int = 5, tile_width: int = 128) -> np.ndarray:
    """Up to ``max_tiles`` evenly spaced frames, each scaled to at most ``tile_width`` wide, left to right, top down."""
    count = min(len(frames), max_tiles)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    height, width = frames.shape[1:3]
    scale = min(1.0, tile_width / width)
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    columns = min(columns, count)
    sheet = np.zeros((math.ceil(count / columns) * tile_h, columns * tile_w, 3), np.uint8)
    for n, index in enumerate(picks):
        row, column = divmod(n, columns)
        tile = np.asarray(Image.fromarray(frames[index]).resize((tile_w, tile_h), Image.Resampling.BILINEAR))
        sheet[row * tile_h : (row + 1) * tile_h, column * tile_w : (column + 1) * tile_w] = tile
    return sheet


def write_previews(folder: Path, frames: np.ndarray, *, thumbnail_name: str, spritesheet_name: str) -> None:
    write_image(folder / thumbnail_name, thumbnail(frames), quality=85)
    write_image(folder / spritesheet_name, spritesheet(frames), quality=85)
