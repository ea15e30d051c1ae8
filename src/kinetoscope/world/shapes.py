"""Shape geometry shared by the renderer and the visibility check.

Every shape of radius ``r`` fits the ``2r x 2r`` box centred on its position and touches the
box's left, right and bottom sides (the star misses the bottom by 5% of ``r``), so contacts
with the floor and the walls look exact for every shape. Collisions between objects treat
every object as a disc of radius ``r`` (exact for balls, which the physics presets use).

Distances are signed (negative inside) and computed with numpy broadcasting, so the same
function serves one pixel, a window of pixels, or a window in every frame of a clip.
"""

from __future__ import annotations

import functools

import numpy as np

#: Inner-to-outer radius of the star's points: fatter than a pentagram so it reads at low resolution.
_STAR_INNER = 0.5


def _star_vertices() -> np.ndarray:
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER)
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    # Scale so the side points reach x = +-1, then centre the box vertically.
    pts /= pts[:, 0].max()
    pts[:, 1] -= (pts[:, 1].max() + pts[:, 1].min()) / 2
    return pts


#: Unit-radius outlines, counter-clockwise (the ball is a circle and has none).
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]),
    "triangle": np.array([[-1.0, -1.0], [1.0, -1.0], [0.0, 1.0]]),
    "star": _star_vertices(),
}


def polygon_distance(dx: np.ndarray, dy: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance from points ``(dx, dy)`` to a closed polygon (any simple polygon)."""
    nearest = None
    inside = np.zeros(np.broadcast_shapes(np.shape(dx), np.shape(dy)), dtype=bool)
    # Python floats keep float32 inputs in float32 (numpy scalars would promote them).
    for (ax, ay), (bx, by) in zip(np.roll(vertices, 1, axis=0).tolist(), vertices.tolist()):
        ex, ey = bx - ax, by - ay
        wx, wy = dx - ax, dy - ay
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        qx, qy = wx - ex * h, wy - ey * h
        d2 = qx * qx + qy * qy
        nearest = d2 if nearest is None else np.minimum(nearest, d2)
        # Even-odd rule: count edges crossed by a ray going right from the point.
        if ay != by:
            straddles = (ay <= dy) != (by <= dy)
            inside ^= straddles & (dx < ax + (dy - ay) * (ex / ey))
    distance = np.sqrt(nearest)
    return np.where(inside, -distance, distance)


def box_distance(dx: np.ndarray, dy: np.ndarray, half_x: float, half_y: float) -> np.ndarray:
    """Exact signed distance to an axis-aligned box with the given half extents."""
    qx = np.abs(dx) - half_x
    qy = np.abs(dy) - half_y
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance from offsets ``(dx, dy)`` (y up, any unit) to ``shape`` of ``radius``."""
    if shape == "ball":
        return np.sqrt(dx * dx + dy * dy) - radius
    if shape == "square":
        return box_distance(dx, dy, radius, radius)
    return polygon_distance(dx, dy, POLYGONS[shape] * float(radius))


@functools.cache
def sample_points(shape: str) -> tuple[np.ndarray, np.ndarray]:
    """``(interior, outline)`` points of the unit shape.

    ``interior`` is a uniform 16x16 grid over the box, kept where inside the shape (the share
    of it in view measures visible area to about 1%); ``outline`` lies on the boundary, so
    "is any of it out of view" is exact to about 1% of the radius.
    """
    grid = (np.arange(16) + 0.5) / 8 - 1.0
    gx, gy = np.meshgrid(grid, grid)
    inside = signed_distance(shape, gx, gy, 1.0) < 0
    interior = np.stack([gx[inside], gy[inside]], axis=1)
    if shape == "ball":
        angles = np.arange(48) * (2 * np.pi / 48)
        outline = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        vertices = POLYGONS[shape]
        steps = np.arange(6)[:, None, None] / 6
        outline = (vertices + steps * (np.roll(vertices, -1, axis=0) - vertices)).reshape(-1, 2)
    for array in (interior, outline):
        array.flags.writeable = False
    return interior, outline
