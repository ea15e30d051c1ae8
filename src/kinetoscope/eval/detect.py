"""Weight-free object detectors: colour masks, connected components, sub-pixel centroids and shapes.

Objects in the world are drawn in the saturated colours of
:data:`~kinetoscope.world.vocabulary.OBJECT_COLORS`, anti-aliased over pale backgrounds, and
the clips are usually stored as lossy mp4. Detection per colour and frame:

1. **Core mask**: pixels within ``CORE_TOLERANCE`` of the colour (max over channels), split
   into 8-connected components. Components under ``MIN_AREA`` pixels (a seam where two other
   colours blend: red against yellow looks orange) and thin bands around a bigger object of
   another colour (red over white looks pink at its edge) are dropped.
2. **Coverage**: around each component, every pixel gets the share ``alpha`` of the object
   colour in its blend with the local background (the median colour of a ring just outside
   the object), projected on the line background -> colour; pixels far from that line, or at
   another colour's core (an object touching it), get 0. This is the paper's colour-threshold mask made sub-pixel: the
   *hard mask* is ``alpha >= 0.5`` (the paper thresholds at half-way too) and the centroid is
   the ``alpha``-weighted mean, which is what keeps the ground-truth velocity floor near the
   paper's on anti-aliased, compressed frames (see ``centroid="hard"`` for the plain one).
3. **Shape** from the hard mask's extent (area / bounding box), solidity (area / convex hull)
   and circularity (``4 pi area / hull perimeter^2``), nearest to the same features measured on
   the world's own renderer at a similar size; **radius** from the covered area and that
   shape's area per radius squared; **position** (the centre of the shape's box, as the world
   state stores it) from the centroid and the shape's centroid offset.
4. An object that goes on past the frame's edge is ``cut``: its shape is read from the
   part in view (unreliable), and its box is extrapolated from the sides that are in view
   (every shape spans a box ``2 r`` wide).

Pixel coordinates are ``(column, row)`` with pixel ``i`` covering ``[i, i + 1)``; world
coordinates follow the state's axes (see :func:`to_world`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from kinetoscope.world.vocabulary import COLORS, OBJECT_COLORS, SHAPES, VIEW_HEIGHT

#: A pixel belongs to a colour's core when every channel is within this of it (mp4 included).
CORE_TOLERANCE = 48
#: Fewer core pixels than this is a blending seam or compression noise, not an object.
MIN_AREA = 6
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
    shape: str  # of the part in view: unreliable when cut
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
    cores = {color: _core_mask(planes, COLORS[color]) for color in colors}
    objects = {color: _object_components(color, cores) for color in colors}
    kept = {color: np.zeros_like(cores[color]) for color in colors}
    for color, components in objects.items():
        for t, box, component in components:
            kept[color][t][box][component] = True
    pixels = frames.astype(np.float32)
    found: list[list[Detection]] = [[] for _ in range(len(frames))]
    for color, components in objects.items():
        # Pixels at or next to another object belong to it, not to a blend with this one.
        others = ndimage.binary_dilation(_union(kept, color), _IN_PLANE)
        rgb = np.asarray(COLORS[color], dtype=np.float32)
        for t, box, component in components:
            found[t].append(_measure(pixels[t], color, rgb, component, (box[0].start, box[1].start), others[t]))
    return found


#: 8-connectivity within a frame and none across time, for (T, H, W) masks.
_IN_PLANE = np.stack([np.zeros((3, 3), bool), _EIGHT, np.zeros((3, 3), bool)])


def _object_components(color: str, cores: dict[str, np.ndarray]) -> list[tuple[int, tuple[slice, slice], np.ndarray]]:
    """``(frame, box, mask)`` of each core component of ``color`` that is an object, not a seam or a rim."""
    near_others = ndimage.binary_dilation(_union(cores, color), _IN_PLANE, iterations=2)
    labels, _ = ndimage.label(cores[color], structure=_IN_PLANE)
    components = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        t, area = box[0].start, box[1:]
        component = labels[t][area] == index
        if component.sum() >= MIN_AREA and not _is_rim(component, near_others[t][area]):
            components.append((t, area, component))
    return components


def _union(masks: dict[str, np.ndarray], leave_out: str) -> np.ndarray:
    union = np.zeros_like(masks[leave_out])
    for color, mask in masks.items():
        if color != leave_out:
            union |= mask
    return union


def _is_rim(component: np.ndarray, near_others: np.ndarray) -> bool:
    """A thin band of blended pixels beside an object of another colour (red over white looks pink at its edge):
    mostly within two pixels of another colour, and almost nothing left after peeling one pixel off."""
    if near_others[component].mean() < 0.5:
        return False
    return ndimage.binary_erosion(component, _EIGHT).sum() < RIM_CORE * component.sum()


def _core_mask(planes: list[np.ndarray], rgb: tuple[int, int, int]) -> np.ndarray:
    """Pixels within ``CORE_TOLERANCE`` of ``rgb`` in every channel (channel planes: faster than a reduce over RGB)."""
    mask = np.abs(planes[0] - rgb[0]) <= CORE_TOLERANCE
    for plane, value in zip(planes[1:], rgb[1:]):
        mask &= np.abs(plane - value) <= CORE_TOLERANCE
    return mask


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
    shape = classify_shape(hard, area)
    if cut:
        radius, center = _extrapolate_box(bbox, (height, width), area, centroid)
    else:
        ref = shape_reference(shape, _size_bucket(math.sqrt(area)))
        radius = math.sqrt(area / ref.area_per_r2)
        center = (centroid[0] - ref.centroid_offset[0] * radius, centroid[1] - ref.centroid_offset[1] * radius)
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

    ``others`` (frame-sized) marks pixels that belong to other objects: they get no coverage.
    """
    window, (r0, c0) = _window(core, origin, frame.shape[:2], RING_OUTER + 1)
    grown = ndimage.binary_dilation(window, _EIGHT, iterations=GROW)
    if others is not None:
        grown &= ~others[r0 : r0 + window.shape[0], c0 : c0 + window.shape[1]]
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
@dataclasses.dataclass(frozen=True)
class ShapeReference:
    """A shape's features as the world's renderer draws it, and its area and centroid per radius."""

    features: tuple[float, float, float]  # extent, solidity, circularity of the hard mask
    area_per_r2: float  # covered area / radius^2 (pi for a ball)
    centroid_offset: tuple[float, float]  # (centroid - box centre) / radius, in px axes (rows down)


def shape_features(hard: np.ndarray) -> tuple[float, float, float]:
    """Extent, solidity and circularity of a hard mask (pixels are unit squares)."""
    rows, cols = np.nonzero(hard)
    area = float(len(rows))
    extent = area / float((np.ptp(rows) + 1) * (np.ptp(cols) + 1))
    rows, cols = np.nonzero(hard & ~ndimage.binary_erosion(hard, _EIGHT))  # the hull only needs the outline
    corners = np.concatenate([np.stack([rows + dr, cols + dc], axis=1) for dr in (0, 1) for dc in (0, 1)])
    try:
        hull = ConvexHull(corners)
    except QhullError:  # a single row or column of pixels
        return extent, 1.0, 0.0
    return extent, area / hull.volume, 4 * math.pi * area / hull.area**2  # in 2D, volume is area and area is perimeter


def classify_shape(hard: np.ndarray, area: float) -> str:
    """The shape whose rendered features at a similar size are nearest to this hard mask's."""
    bucket = _size_bucket(math.sqrt(area))
    features = np.array(shape_features(hard))
    distances = [np.linalg.norm(features - np.array(shape_reference(s, bucket).features)) for s in SHAPES]
    return SHAPES[int(np.argmin(distances))]


#: Radii (px) at which the shape references are rendered; a detection uses the nearest.
_BUCKETS = (3.0, 5.0, 8.0, 13.0, 21.0, 34.0)


def _size_bucket(sqrt_area: float) -> float:
    radius = sqrt_area / 1.8  # roughly the radius of any of the shapes with this area
    return min(_BUCKETS, key=lambda b: abs(math.log(b / max(radius, 1e-6))))


@functools.lru_cache(maxsize=None)
def shape_reference(shape: str, radius_px: float) -> ShapeReference:
    """Features of ``shape`` drawn by the world's renderer at ``radius_px``, averaged over sub-pixel offsets."""
    from kinetoscope.world import Body, Scene, render_clip

    size = int(2 * radius_px + 16)
    ppu = size / VIEW_HEIGHT
    rgb = np.asarray(COLORS["red"], dtype=np.float32)
    features, areas, offsets = [], [], []
    for dx, dy in ((0.0, 0.0), (0.25, 0.5), (0.5, 0.25), (0.75, 0.75)):
        centre = ((size / 2 + dx) / ppu, (size - size / 2 - dy) / ppu)
        body = Body(shape, "red", radius_px / ppu, centre)
        frame = render_clip(Scene(bodies=(body,)), width=size, height=size, frames=1, fps=1.0).frames[0].astype(np.float32)
        core = _core_mask([frame[..., c].astype(np.int16) for c in range(3)], COLORS["red"])
        alpha, corner = _soft_mask(frame, rgb, core, (0, 0))
        features.append(shape_features(alpha >= 0.5))
        areas.append(alpha.sum() / radius_px**2)
        centroid = _centroid(alpha, corner)
        offsets.append(((centroid[0] - size / 2 - dx) / radius_px, (centroid[1] - size / 2 - dy) / radius_px))
    return ShapeReference(_mean_tuple(features), float(np.mean(areas)), _mean_tuple(offsets))


def _mean_tuple(values: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(float(v) for v in np.mean(values, axis=0))


def describe_detection(detection: Detection) -> dict[str, Any]:
    """A JSON-ready summary of a detection."""
    return {
        "color": detection.color,
        "shape": detection.shape,
        "center_px": [round(v, 3) for v in detection.center],
        "radius_px": round(detection.radius, 3),
        "area_px": round(detection.area, 2),
        "cut": detection.cut,
    }


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
