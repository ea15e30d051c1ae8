"""A vectorised, anti-aliased rasteriser that draws a ground-truth state into uint8 frames.

Each shape's coverage of a pixel is ``clip(0.5 - d, 0, 1)`` with ``d`` the signed distance in
pixels from the pixel's centre to its outline (a one-pixel box filter across the edge).
Layers are composited back to front: background, paint trail, bodies in id order, occluder.

For speed every body is drawn in all frames of a chunk at once, and only inside a window
around it: the window's pixel indices are gathered from the chunk, blended, and scattered
back with numpy fancy indexing. Chunks bound memory for large frames.

Rendering reads nothing but the state dict, so a saved state file can be re-rendered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from kinetoscope.world.shapes import box_distance, signed_distance
from kinetoscope.world.vocabulary import VIEW_HEIGHT

#: Pixels per chunk of frames rendered together (about 50 MB of float32 RGB).
CHUNK_PIXELS = 1 << 22

DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def render_state(state: dict[str, Any]) -> np.ndarray:
    """Draw every frame of a ground-truth state: uint8 ``(T, H, W, 3)``."""
    width, height, frames = state["width"], state["height"], state["frames"]
    ppu = height / VIEW_HEIGHT
    camera = np.asarray(state["camera"]["offset"], dtype=np.float64).reshape(frames, 2)
    trail = _Trail(state["paint"], state["fps"], camera[0], width, height) if state["paint"] else None
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    # A still camera sees one backdrop: draw it once and copy it into every chunk.
    still = bool(np.all(camera == camera[0]))
    backdrop = _background(state["background"], camera[:1], width, height) if still else None
    step = max(1, CHUNK_PIXELS // (width * height))
    for start in range(0, frames, step):
        chunk = slice(start, min(frames, start + step))
        if backdrop is not None:
            canvas = np.repeat(backdrop, chunk.stop - chunk.start, axis=0)
        else:
            canvas = _background(state["background"], camera[chunk], width, height)
        if trail is not None:
            trail.draw(canvas, range(chunk.start, chunk.stop))
        for obj in state["objects"]:
            centres = _to_pixels(np.asarray(obj["position"])[chunk], camera[chunk], height)
            half = obj["radius"] * ppu
            _draw(canvas, centres, (half, half), obj["rgb"], _shape_distance(obj["shape"], half))
        if state["occluder"] is not None:
            _draw_occluder(canvas, state["occluder"], camera[chunk], height)
        canvas += 0.5  # then the cast to uint8 truncates: round half up, values are in [0, 255]
        out[chunk] = canvas
    return out


def _to_pixels(points: np.ndarray, camera: np.ndarray, height: int) -> np.ndarray:
    """World ``(T, 2)`` -> continuous pixel ``(column, row)``; row 0 is the top edge."""
    ppu = height / VIEW_HEIGHT
    return np.stack([(points[:, 0] - camera[:, 0]) * ppu, height - (points[:, 1] - camera[:, 1]) * ppu], axis=1)


def _shape_distance(shape: str, radius_px: float) -> DistanceFn:
    return lambda dx, dy: signed_distance(shape, dx, dy, radius_px)


def _draw(canvas: np.ndarray, centres: np.ndarray, half: tuple[float, float], rgb: Any, distance: DistanceFn) -> None:
    """Blend one shape into every frame of ``canvas`` ``(T, H, W, 3)``, centred at ``centres`` ``(T, 2)`` px.

    ``half`` bounds the shape's half extents in px; only the window they span is touched.
    """
    _, height, width, _ = canvas.shape
    half_x, half_y = half
    # Frames where the shape's box meets the frame (the others get nothing).
    on = (
        (centres[:, 0] + half_x > -1)
        & (centres[:, 0] - half_x < width + 1)
        & (centres[:, 1] + half_y > -1)
        & (centres[:, 1] - half_y < height + 1)
    )
    if not on.any():
        return
    frames = np.flatnonzero(on)
    u, v = centres[frames, 0], centres[frames, 1]
    # Pixels whose centres lie within half a pixel of the box; windows slide inside the frame.
    win_w, win_h = min(width, int(2 * half_x + 3)), min(height, int(2 * half_y + 3))
    left = np.clip(np.ceil(u - half_x - 1), 0, width - win_w).astype(np.intp)
    top = np.clip(np.ceil(v - half_y - 1), 0, height - win_h).astype(np.intp)
    cols = left[:, None] + np.arange(win_w)
    rows = top[:, None] + np.arange(win_h)
    dx = (cols + 0.5 - u[:, None]).astype(np.float32)[:, None, :]
    dy = (v[:, None] - rows - 0.5).astype(np.float32)[:, :, None]  # y up, like the world
    alpha = np.clip(0.5 - distance(dx, dy), 0.0, 1.0).reshape(-1, 1)
    # Gather the windows' pixels as rows of the flat (pixels, 3) view: much faster than 3-D fancy indexing.
    pixel = ((frames[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]).ravel()
    flat = canvas.reshape(-1, 3)  # a view: canvases are contiguous
    region = np.take(flat, pixel, axis=0)
    region += alpha * (np.asarray(rgb, dtype=np.float32) - region)
    flat[pixel] = region


def _draw_occluder(canvas: np.ndarray, occluder: dict[str, Any], camera: np.ndarray, height: int) -> None:
    ppu = height / VIEW_HEIGHT
    centre = np.array([[(occluder["x0"] + occluder["x1"]) / 2, (occluder["y0"] + occluder["y1"]) / 2]])
    half = ((occluder["x1"] - occluder["x0"]) / 2 * ppu, (occluder["y1"] - occluder["y0"]) / 2 * ppu)
    centres = _to_pixels(np.repeat(centre, len(camera), axis=0), camera, height)
    _draw(canvas, centres, half, occluder["rgb"], lambda dx, dy: box_distance(dx, dy, *half))


def _background(background: dict[str, Any], camera: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float32 ``(T, H, W, 3)`` background seen from each camera offset ``(T, 2)``."""
    ppu = height / VIEW_HEIGHT
    colors = np.asarray(background["rgb"], dtype=np.float32)
    # World coordinates of pixel centres: (T, W) for columns, (T, H) for rows.
    x = camera[:, 0, None] + (np.arange(width) + 0.5) / ppu
    y = camera[:, 1, None] + (height - np.arange(height) - 0.5) / ppu
    canvas = np.empty((len(camera), height, width, 3), dtype=np.float32)
    kind = background["kind"]
    if kind == "plain":
        canvas[:] = colors[0]
    elif kind == "gradient":
        top_share = np.clip(y / VIEW_HEIGHT, 0.0, 1.0).astype(np.float32)[..., None]
        canvas[:] = (colors[1] + top_share * (colors[0] - colors[1]))[:, :, None, :]
    else:  # floor: a checkered band below floor_height under a plain sky
        _draw_floor(canvas, colors, background, x, y, ppu)
    return canvas


def _draw_floor(
    canvas: np.ndarray, colors: np.ndarray, background: dict[str, Any], x: np.ndarray, y: np.ndarray, ppu: float
) -> None:
    """Sky above ``floor_height``, a checkerboard below, both edges anti-aliased.

    With ``below`` the floor's coverage of a row and ``fx``, ``fy`` the filtered square waves
    of the tiles, the colour is ``sky + below (mid - sky) + below fy fx (a - b) / 2``: a row
    term plus a row term times a column term, so the whole frame takes two broadcast passes.
    """
    sky, tile_a, tile_b = colors
    below = np.clip((background["floor_height"] - y) * ppu + 0.5, 0.0, 1.0)[..., None]  # (T, H, 1)
    fy = _box_filtered_square_wave(y, background["tile"], ppu)[..., None]
    fx = _box_filtered_square_wave(x, background["tile"], ppu)  # (T, W)
    rows = (sky + below * ((tile_a + tile_b) / 2 - sky)).astype(np.float32)  # (T, H, 3)
    stripes = (below * fy * (tile_a - tile_b) / 2).astype(np.float32)
    np.multiply(stripes[:, :, None, :], fx.astype(np.float32)[:, None, :, None], out=canvas)
    canvas += rows[:, :, None, :]


def _box_filtered_square_wave(coord: np.ndarray, tile: float, ppu: float) -> np.ndarray:
    """The +-1 square wave of period ``2 * tile`` averaged over each pixel's footprint.

    The average of a square wave is a difference of its integral, a triangle wave, so the
    checkerboard is anti-aliased exactly and fades to grey where tiles are below a pixel.
    """
    pixel = 1.0 / ppu

    def triangle(s: np.ndarray) -> np.ndarray:
        return tile - np.abs(np.mod(s, 2 * tile) - tile)

    return (triangle(coord + pixel / 2) - triangle(coord - pixel / 2)) / pixel


class _Trail:
    """The brush's persistent paint: coverage accumulates frame by frame and is never erased.

    A segment of the brush's path is painted from the first frame at or after its end time;
    coverage of the union of capsules is the maximum of their coverages.
    """

    def __init__(self, paint: dict[str, Any], fps: float, camera: np.ndarray, width: int, height: int):
        path = np.asarray(paint["path"], dtype=np.float64).reshape(-1, 3)
        points = _to_pixels(path[:, 1:], np.repeat(camera[None], len(path), axis=0), height)
        self.starts, self.ends = points[:-1], points[1:]
        self.frame = np.array([max(0, math.ceil(t * fps - 1e-6)) for t in path[1:, 0]], dtype=np.int64)
        self.half_width = paint["width"] / 2 * height / VIEW_HEIGHT
        self.rgb = np.asarray(paint["rgb"], dtype=np.float32)
        self.coverage = np.zeros((height, width), dtype=np.float32)
        self.drawn_until = -1

    def draw(self, canvas: np.ndarray, frames: range) -> None:
        for k, f in enumerate(frames):
            for s in np.flatnonzero((self.frame > self.drawn_until) & (self.frame <= f)):
                self._paint_segment(self.starts[s], self.ends[s])
            self.drawn_until = f
            canvas[k] += self.coverage[..., None] * (self.rgb - canvas[k])

    def _paint_segment(self, a: np.ndarray, b: np.ndarray) -> None:
        height, width = self.coverage.shape
        reach = self.half_width + 1.0
        c0, c1 = max(0, math.floor(min(a[0], b[0]) - reach)), min(width, math.ceil(max(a[0], b[0]) + reach) + 1)
        r0, r1 = max(0, math.floor(min(a[1], b[1]) - reach)), min(height, math.ceil(max(a[1], b[1]) + reach) + 1)
        if c0 >= c1 or r0 >= r1:
            return
        wx = (np.arange(c0, c1) + 0.5 - a[0])[None, :]
        wy = (np.arange(r0, r1) + 0.5 - a[1])[:, None]
        ex, ey = b - a
        length2 = ex * ex + ey * ey
        h = np.clip((wx * ex + wy * ey) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        distance = np.sqrt((wx - ex * h) ** 2 + (wy - ey * h) ** 2) - self.half_width
        window = self.coverage[r0:r1, c0:c1]
        np.maximum(window, np.clip(0.5 - distance, 0.0, 1.0), out=window)
