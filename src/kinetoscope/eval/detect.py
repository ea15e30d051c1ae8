"""Weight-free object detectors: colour masks, connected components, sub-pixel centroids and shapes.

Objects in the world are drawn in the saturated colours of
:data:`~kinetoscope.world.vocabulary.OBJECT_COLORS`, anti-aliased over pale backgrounds, and
the clips are usually stored as lossy mp4. Detection per colour and frame:

1. **Core mask**: pixels within ``CORE_TOLERANCE`` of the colour (max over channels), split
   into 8-connected components. Components under ``MIN_AREA`` pixels (a seam where two other
   colours blend: red against yellow looks orange) and thin bands around a bigger object of
   another colour or the occluder (red over white looks pink at its edge, orange half behind
   the dark bar looks brown) are dropped.
2. **Coverage**: around each component, every pixel gets the share ``alpha`` of the object
   colour in its blend with the local background (the median colour of a ring just outside
   the object), projected on the line background -> colour; pixels far from that line, or at
   another colour's core (an object touching it), get 0. This is the paper's colour-threshold
   mask made sub-pixel: the *hard mask* is ``alpha >= 0.5`` (the paper thresholds half-way
   too) and the centroid is the ``alpha``-weighted mean, which keeps the ground-truth velocity
   floor near the paper's on anti-aliased, compressed frames (``hard_centroid`` is the plain
   mean of the hard mask, the paper's parse).
3. **Shape, radius and position**: each of the world's shapes is placed where its area and
   centroid would put it (radius from the covered area, the centre of its box, which is the
   position the state stores, from the centroid) and drawn as the world's renderer draws it;
   the one that best explains the coverage wins. Fitting the whole coverage reads small stars
   that mp4 has blurred into blobs, which extent, solidity or corner counts of the hard mask
   misread as triangles.
4. An object that goes on past the frame's edge is ``cut``: its box is extrapolated from the
   sides in view (every shape spans a box ``2 r`` wide) and the shapes are fitted there.

Pixel coordinates are ``(column, row)`` with pixel ``i`` covering ``[i, i + 1)``; world
coordinates follow the state's axes (see :func:`to_world`).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage

from kinetoscope.world.shapes import signed_distance
from kinetoscope.world.vocabulary import COLORS, OBJECT_COLORS, OCCLUDER_COLOR, SHAPES, VIEW_HEIGHT

#: A pixel belongs to a colour's core when every channel is within this of it (mp4 included).
CORE_TOLERANCE = 48
#: Fewer core pixels than this is a blending seam or compression noise, not an object.
MIN_AREA = 3
#: A component beside another colour whose inside (one pixel peeled off) is under this share of it is a rim.
RIM_CORE = 0.2
#: A pixel whose colour is further than this from the background -> object line is not a blend of
#: them (mp4 stores colour at half resolution, so true blends stray up to about 80 at edges).
BLEND_TOLERANCE = 100.0
#: Below this distance between object and background colour, coverage falls back to the core mask.
MIN_CONTRAST = 45.0
#: Rings (in pixels) around the core: coverage is computed within ``GROW``, the background
#: is sampled between ``RING_INNER`` and ``RING_OUTER``.
GROW, RING_INNER, RING_OUTER = 2, 3, 5
#: Coverage of a border pixel above which the object goes on past the frame's edge.
FULL_COVERAGE = 0.9
#: A piece of one colour under this share of the colour's largest object in the frame is a
#: fragment (a blend, mp4 noise), not another object.
FRAGMENT_SHARE = 0.25
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclasses.dataclass(frozen=True)
class Detection:
    """One object of one colour in one frame, in pixels (``(column, row)``, rows down)."""

    color: str
    centroid: tuple[float, float]  # coverage-weighted mean of pixel centres
    hard_centroid: tuple[float, float]  # plain mean of the hard mask's pixel centres
    area: float  # covered pixels (sum of coverage)
    bbox: tuple[int, int, int, int]  # hard mask: row0, row1, col0, col1 (exclusive ends)
    cut: bool  # goes on past the frame's edge: partly out of view
    shape: str  # one of the world's SHAPES
    radius: float  # half the side of the shape's box, px
    center: tuple[float, float]  # centre of the shape's box, px

    def point(self, centroid: str = "soft") -> tuple[float, float]:
        """The pixel position velocity is measured from: the soft or the hard mask's centroid."""
        return self.centroid if centroid == "soft" else self.hard_centroid


def detect_video(frames: np.ndarray, colors: Iterable[str] = OBJECT_COLORS) -> list[list[Detection]]:
    """Every object in every frame of uint8 ``(T, H, W, 3)`` frames: one list of detections per frame."""
    frames = np.asarray(frames)
    planes = [frames[..., c].astype(np.int16) for c in range(3)]
    colors = list(colors)
    # The occluder's colour counts as another colour for telling rims (an object half behind it blends into it).
    cores = {color: _core_mask(planes, COLORS[color]) for color in dict.fromkeys([*colors, OCCLUDER_COLOR])}
    objects = {color: _object_components(color, cores) for color in colors}
    kept = {color: np.zeros_like(cores[color]) for color in colors}
    for color, components in objects.items():
        for t, box, component in components:
            kept[color][t][box][component] = True
    pixels = frames.astype(np.float32)
    found: list[list[Detection]] = [[] for _ in range(len(frames))]
    for color, components in objects.items():
        others = _union(kept, color) if components else None
        rgb = np.asarray(COLORS[color], dtype=np.float32)
        for t, box, component in components:
            found[t].append(_measure(pixels[t], color, rgb, component, (box[0].start, box[1].start), others[t]))
    return found


#: 8-connectivity within a frame and none across time, for (T, H, W) masks.
_IN_PLANE = np.stack([np.zeros((3, 3), bool), _EIGHT, np.zeros((3, 3), bool)])


def _object_components(color: str, cores: dict[str, np.ndarray]) -> list[tuple[int, tuple[slice, slice], np.ndarray]]:
    """``(frame, box, mask)`` of each core component of ``color`` that is an object, not a seam or a rim."""
    labels, count = ndimage.label(cores[color], structure=_IN_PLANE)
    if count == 0:
        return []
    other_cores = _union(cores, color)
    components = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        t, area = box[0].start, box[1:]
        component = labels[t][area] == index
        if component.sum() >= MIN_AREA and not _is_rim(component, other_cores[t], area):
            components.append((t, area, component))
    return components


def _union(masks: dict[str, np.ndarray], leave_out: str) -> np.ndarray:
    union = np.zeros_like(masks[leave_out])
    for color, mask in masks.items():
        if color != leave_out:
            union |= mask
    return union


def _is_rim(component: np.ndarray, other_cores: np.ndarray, box: tuple[slice, slice]) -> bool:
    """A thin band of blended pixels around a bigger object of another colour (red over white looks
    pink at its edge): mostly within two pixels of that colour, fewer pixels than the other colour
    has around it, and almost nothing left after peeling one pixel off."""
    rows, cols = box
    top, left = max(rows.start - 2, 0), max(cols.start - 2, 0)
    around = other_cores[top : rows.stop + 2, left : cols.stop + 2]
    if around.sum() <= component.sum():
        return False
    near = ndimage.binary_dilation(around, _EIGHT, iterations=2)
    inner = near[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
    if inner[component].mean() < 0.5:
        return False
    return ndimage.binary_erosion(component, _EIGHT).sum() < RIM_CORE * component.sum()


def _core_mask(planes: list[np.ndarray], rgb: tuple[int, int, int]) -> np.ndarray:
    """Pixels within ``CORE_TOLERANCE`` of ``rgb`` in every channel (channel planes: faster than a reduce over RGB)."""
    mask = np.abs(planes[0] - rgb[0]) <= CORE_TOLERANCE
    for plane, value in zip(planes[1:], rgb[1:]):
        mask &= np.abs(plane - value) <= CORE_TOLERANCE
    return mask


def count_objects(frame: np.ndarray, found: Sequence[Detection]) -> dict[str, int]:
    """How many objects of each colour one uint8 ``(H, W, 3)`` frame shows, from its detections.

    Pieces of one colour that something in front splits apart (the occluder, another object) are
    one object: the line between their centroids runs over that colour, the occluder or another
    object all the way, where two objects have background between them. Pieces under
    ``FRAGMENT_SHARE`` of the colour's largest object are not counted.
    """
    by_color: dict[str, list[Detection]] = {}
    for detection in found:
        by_color.setdefault(detection.color, []).append(detection)
    drawn = None
    counts = {}
    for color, pieces in by_color.items():
        group = list(range(len(pieces)))
        for i, j in itertools.combinations(range(len(pieces)), 2):
            if drawn is None:
                drawn = _drawn(frame)
            if _runs_over(drawn, pieces[i].centroid, pieces[j].centroid):
                group = [group[i] if g == group[j] else g for g in group]
        areas = np.bincount(group, weights=[p.area for p in pieces])
        counts[color] = int((areas >= FRAGMENT_SHARE * areas.max()).sum())
    return counts


def _drawn(frame: np.ndarray) -> np.ndarray:
    """Pixels on or beside an object's or the occluder's colour (blended edges included)."""
    planes = [frame[..., c].astype(np.int16) for c in range(3)]
    mask = np.zeros(frame.shape[:2], dtype=bool)
    for color in (*OBJECT_COLORS, OCCLUDER_COLOR):
        mask |= _core_mask(planes, COLORS[color])
    return ndimage.binary_dilation(mask, _EIGHT, iterations=GROW)


def _runs_over(mask: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether every pixel on the segment between ``(column, row)`` points ``a`` and ``b`` is in ``mask``."""
    steps = max(int(2 * math.hypot(b[0] - a[0], b[1] - a[1])), 1) + 1
    cols = np.clip(np.linspace(a[0], b[0], steps).astype(int), 0, mask.shape[1] - 1)
    rows = np.clip(np.linspace(a[1], b[1], steps).astype(int), 0, mask.shape[0] - 1)
    return bool(mask[rows, cols].all())


def to_world(point: Sequence[float], *, height: int, camera: Sequence[float] = (0.0, 0.0)) -> np.ndarray:
    """Pixel ``(column, row)`` -> world ``(x, y)``: the frame is ``VIEW_HEIGHT`` units tall, y up."""
    ppu = height / VIEW_HEIGHT
    return np.array([point[0] / ppu + camera[0], (height - point[1]) / ppu + camera[1]])


def _measure(
    frame: np.ndarray, color: str, rgb: np.ndarray, component: np.ndarray, origin: tuple[int, int], others: np.ndarray
) -> Detection:
    height, width = frame.shape[:2]
    alpha, (r0, c0) = _soft_mask(frame, rgb, component, origin, others)
    hard = alpha >= 0.5
    area = float(alpha.sum())
    rows, cols = np.nonzero(hard)  # never empty: core pixels have coverage >= 0.5
    centroid = _centroid(alpha, (r0, c0))
    hard_centroid = (float(cols.mean()) + 0.5 + c0, float(rows.mean()) + 0.5 + r0)
    bbox = (int(rows.min()) + r0, int(rows.max()) + 1 + r0, int(cols.min()) + c0, int(cols.max()) + 1 + c0)
    cut = _touches_border(alpha, (r0, c0), (height, width))
    box = _extrapolate_box(bbox, (height, width), area, centroid) if cut else None
    shape, radius, center = fit_shape(alpha, (r0, c0), centroid, box)
    return Detection(color, centroid, hard_centroid, area, bbox, cut, shape, radius, center)


def _touches_border(alpha: np.ndarray, corner: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether the object goes on past the frame's edge: a pixel on the border is (almost) fully covered.

    An outline just inside the border covers its pixels only partly, so an object wholly in view
    but touching the edge (a square resting on the bottom of the frame) does not count as cut.
    """
    (r0, c0), (height, width) = corner, size
    borders = []
    if r0 == 0:
        borders.append(alpha[0])
    if c0 == 0:
        borders.append(alpha[:, 0])
    if r0 + alpha.shape[0] == height:
        borders.append(alpha[-1])
    if c0 + alpha.shape[1] == width:
        borders.append(alpha[:, -1])
    return any(float(line.max()) >= FULL_COVERAGE for line in borders)


def _soft_mask(
    frame: np.ndarray, rgb: np.ndarray, core: np.ndarray, origin: tuple[int, int], others: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Coverage ``alpha`` of ``rgb`` around a core component, and the top-left corner of its window.

    ``others`` (frame-sized) marks pixels of other objects: they and their neighbours get no coverage.
    """
    window, (r0, c0) = _window(core, origin, frame.shape[:2], RING_OUTER + 1)
    grown = ndimage.binary_dilation(window, _EIGHT, iterations=GROW)
    if others is not None:
        grown &= ~ndimage.binary_dilation(others[r0 : r0 + window.shape[0], c0 : c0 + window.shape[1]], _EIGHT)
    ring = ndimage.binary_dilation(window, _EIGHT, iterations=RING_OUTER) & ~ndimage.binary_dilation(
        window, _EIGHT, iterations=RING_INNER
    )
    patch = frame[r0 : r0 + window.shape[0], c0 : c0 + window.shape[1]]
    if not ring.any():  # the object fills the frame: no background to blend with
        return window.astype(np.float64), (r0, c0)
    background = np.median(patch[ring], axis=0)
    line = rgb - background
    length2 = float(line @ line)
    if length2 < MIN_CONTRAST**2:  # object and background too alike to tell a blend from noise
        return window.astype(np.float64), (r0, c0)
    offset = patch - background
    alpha = np.clip(offset @ line / length2, 0.0, 1.0)
    # Off the background -> colour line it is something else (another object): no coverage.
    blend = np.linalg.norm(offset - alpha[..., None] * line, axis=-1) <= BLEND_TOLERANCE
    alpha = np.where(grown & blend, alpha, 0.0)
    # Core pixels are the colour whatever the projection says (it can dip on a low-contrast background).
    return np.where(window, np.maximum(alpha, 0.5), alpha), (r0, c0)


def _centroid(alpha: np.ndarray, corner: tuple[int, int]) -> tuple[float, float]:
    rows, cols = np.indices(alpha.shape)
    total = float(alpha.sum())
    return float((alpha * (cols + 0.5)).sum() / total) + corner[1], float((alpha * (rows + 0.5)).sum() / total) + corner[0]


def _window(component: np.ndarray, origin: tuple[int, int], size: tuple[int, int], pad: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The component padded by ``pad`` pixels (clipped to the frame), and the window's top-left corner."""
    r0, c0 = max(origin[0] - pad, 0), max(origin[1] - pad, 0)
    r1 = min(origin[0] + component.shape[0] + pad, size[0])
    c1 = min(origin[1] + component.shape[1] + pad, size[1])
    window = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    window[origin[0] - r0 : origin[0] - r0 + component.shape[0], origin[1] - c0 : origin[1] - c0 + component.shape[1]] = component
    return window, (r0, c0)


def _extrapolate_box(
    bbox: tuple[int, int, int, int], size: tuple[int, int], area: float, centroid: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """Radius and box centre of a shape cut by the frame's edge, from the sides still in view."""
    r0, r1, c0, c1 = bbox
    height, width = size
    cut_x = (c0 == 0) != (c1 == width)  # cut on exactly one side: the other side is a true edge
    cut_y = (r0 == 0) != (r1 == height)
    if cut_x and not cut_y:
        radius = (r1 - r0) / 2
        return radius, (c1 - radius if c0 == 0 else c0 + radius, (r0 + r1) / 2)
    if cut_y and not cut_x:
        radius = (c1 - c0) / 2
        return radius, ((c0 + c1) / 2, r1 - radius if r0 == 0 else r0 + radius)
    return math.sqrt(area / math.pi), centroid


# ---------------------------------------------------------------- shapes
@functools.lru_cache(maxsize=None)
def unit_shape(shape: str) -> tuple[float, tuple[float, float]]:
    """Area per radius squared, and centroid minus box centre per radius (x right, rows down), of ``shape``."""
    grid = (np.arange(512) + 0.5) / 256 - 1.0
    x, y = np.meshgrid(grid, grid)  # y up, as the world's shapes are defined
    inside = signed_distance(shape, x, y, 1.0) < 0
    return 4.0 * float(inside.mean()), (float(x[inside].mean()), -float(y[inside].mean()))


def fit_shape(
    alpha: np.ndarray, corner: tuple[int, int], centroid: tuple[float, float], box: tuple[float, tuple[float, float]] | None = None
) -> tuple[str, float, tuple[float, float]]:
    """``(shape, radius, centre)`` of the shape whose anti-aliased drawing best explains the coverage ``alpha``.

    Each shape is placed by the area and centroid it would have (or at ``box``, the radius and
    centre extrapolated for an object cut by the frame's edge), drawn as the world's renderer
    draws it (coverage ``clip(0.5 - d, 0, 1)`` of the signed distance ``d`` in pixels), and
    compared with ``alpha`` pixel by pixel.
    """
    rows, cols = np.indices(alpha.shape)
    x, y = cols + corner[1] + 0.5, rows + corner[0] + 0.5
    area = float(alpha.sum())

    def placed(shape: str) -> tuple[float, tuple[float, float]]:
        if box is not None:
            return box
        per_r2, offset = unit_shape(shape)
        radius = math.sqrt(area / per_r2)
        return radius, (centroid[0] - offset[0] * radius, centroid[1] - offset[1] * radius)

    def misfit(shape: str) -> float:
        radius, centre = placed(shape)
        drawn = np.clip(0.5 - signed_distance(shape, x - centre[0], centre[1] - y, radius), 0.0, 1.0)
        return float(np.abs(alpha - drawn).sum())

    shape = min(SHAPES, key=misfit)
    return (shape, *placed(shape))


def match_objects(detections: list[list[Detection]], state: dict[str, Any]) -> list[list[Detection | None]]:
    """For each frame and ground-truth object, its detection: same palette colour, then nearest position.

    ``None`` where no detection of the object's colour exists in that frame.
    """
    height = state["height"]
    matched = []
    for t, found in enumerate(detections):
        camera = state["camera"]["offset"][t]
        row: list[Detection | None] = []
        for obj in state["objects"]:
            same = [d for d in found if d.color == obj["color"]]
            truth = np.asarray(obj["position"][t])
            row.append(min(same, key=lambda d: float(np.linalg.norm(to_world(d.center, height=height, camera=camera) - truth)), default=None))
        matched.append(row)
    return matched
