"""What a world is made of: bodies, an occluder, a background, a camera, and the scene holding them.

All lengths are world units with **x to the right and y up**; the view is ``VIEW_HEIGHT``
(10) units tall and its bottom-left corner sits at the camera offset. A scene is only its
initial conditions: :mod:`kinetoscope.world.physics` moves it, :mod:`.render` draws it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from kinetoscope.errors import InvalidInputError
from kinetoscope.world.vocabulary import ACTIONS, BACKGROUNDS, COLORS, SHAPES, VIEW_HEIGHT, WALLS

#: Accepted frame sizes, in pixels, for width and height alike.
MIN_SIZE, MAX_SIZE = 4, 2048

ROLES = ("object", "brush", "agent")


def _check_color(name: str, what: str) -> None:
    if name not in COLORS:
        raise InvalidInputError(f"{what} colour {name!r} is not in the palette; use one of {', '.join(COLORS)}.")


@dataclasses.dataclass(frozen=True)
class Body:
    """A moving shape. ``radius`` is half the side of the box the shape fits; mass is ``radius**2``.

    ``role`` is ``"object"`` (moved by physics), ``"brush"`` (moved by physics, leaves a paint
    trail) or ``"agent"`` (moved by the scene's actions, ignores physics).
    """

    shape: str
    color: str
    radius: float
    position: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    role: str = "object"

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InvalidInputError(f"Shape {self.shape!r} is not one of {', '.join(SHAPES)}.")
        _check_color(self.color, "Body")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InvalidInputError(f"Body radius must be a positive number of world units, got {self.radius!r}.")
        if self.role not in ROLES:
            raise InvalidInputError(f"Body role {self.role!r} is not one of {', '.join(ROLES)}.")

    @property
    def mass(self) -> float:
        return self.radius**2


@dataclasses.dataclass(frozen=True)
class Occluder:
    """An axis-aligned bar drawn in front of every body: things pass behind it."""

    x0: float
    x1: float
    y0: float
    y1: float
    color: str = "dark gray"

    def __post_init__(self) -> None:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise InvalidInputError(f"Occluder needs x0 < x1 and y0 < y1, got {dataclasses.astuple(self)[:4]}.")
        _check_color(self.color, "Occluder")


@dataclasses.dataclass(frozen=True)
class Background:
    """``plain``: ``colors=(c,)``; ``gradient``: ``(top, bottom)`` over the view's height;
    ``floor``: ``(sky, tile_a, tile_b)`` with a checkered floor below ``floor_height``.

    Backgrounds are anchored in the world, not the screen, so a panning camera sees them move.
    """

    kind: str = "plain"
    colors: tuple[str, ...] = ("white",)
    floor_height: float = 0.0
    tile: float = 1.0

    def __post_init__(self) -> None:
        wanted = {"plain": 1, "gradient": 2, "floor": 3}
        if self.kind not in BACKGROUNDS:
            raise InvalidInputError(f"Background {self.kind!r} is not one of {', '.join(BACKGROUNDS)}.")
        if len(self.colors) != wanted[self.kind]:
            raise InvalidInputError(
                f"A {self.kind} background takes {wanted[self.kind]} colour(s), got {len(self.colors)}."
            )
        for name in self.colors:
            _check_color(name, "Background")
        if self.tile <= 0:
            raise InvalidInputError(f"Background tile size must be positive, got {self.tile!r}.")


@dataclasses.dataclass(frozen=True)
class Camera:
    """Static (``pan=0``) or panning ``pan`` units to the right and back over the clip.

    The pan follows ``pan * (1 - cos(2 pi t / duration)) / 2``: it starts and ends at rest at
    offset 0, and frames ``f`` and ``T-1-f`` see the same part of the world.
    """

    pan: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pan) and self.pan >= 0):
            raise InvalidInputError(f"Camera pan must be a distance of 0 or more world units, got {self.pan!r}.")

    def offsets(self, times: np.ndarray, duration: float) -> np.ndarray:
        """World position ``(T, 2)`` of the view's bottom-left corner at each time."""
        x = np.zeros(len(times))
        if self.pan > 0 and duration > 0:
            x = self.pan * (1.0 - np.cos(2.0 * np.pi * np.asarray(times) / duration)) / 2.0
        return np.stack([x, np.zeros(len(times))], axis=1)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A world's initial conditions.

    ``walls`` are any of floor (at ``floor_y``), ceiling (at ``VIEW_HEIGHT``), left (at x=0) and
    right (at ``x = scene_width``; ``None`` means the width of the view). ``actions`` drive the
    body whose role is ``"agent"``: one action per step between consecutive frames, each moving
    it ``agent_speed / fps`` units. A ``"brush"`` body leaves a trail ``paint_width`` units wide.
    """

    bodies: tuple[Body, ...]
    gravity: float = 0.0
    walls: tuple[str, ...] = ()
    floor_y: float = 0.0
    scene_width: float | None = None
    background: Background = Background()
    camera: Camera = Camera()
    occluder: Occluder | None = None
    actions: tuple[str, ...] | None = None
    agent_speed: float = 0.0
    paint_width: float = 0.0

    def __post_init__(self) -> None:
        if not self.bodies:
            raise InvalidInputError("A scene needs at least one body.")
        unknown = sorted(set(self.walls) - set(WALLS))
        if unknown:
            raise InvalidInputError(f"Unknown wall(s) {', '.join(unknown)}; walls are {', '.join(WALLS)}.")
        roles = [b.role for b in self.bodies]
        for role in ("brush", "agent"):
            if roles.count(role) > 1:
                raise InvalidInputError(f"A scene takes at most one {role}, got {roles.count(role)}.")
        if ("agent" in roles) != (self.actions is not None):
            raise InvalidInputError("A scene with an agent body needs actions, and actions need an agent body.")
        for action in self.actions or ():
            if action not in ACTIONS:
                raise InvalidInputError(f"Action {action!r} is not one of {', '.join(ACTIONS)}.")
        if "brush" in roles and self.camera.pan > 0:
            raise InvalidInputError("A brush's paint trail needs a static camera; set camera pan to 0.")
        if self.gravity < 0:
            raise InvalidInputError(f"Gravity is a downward acceleration of 0 or more, got {self.gravity!r}.")

    def role_index(self, role: str) -> int | None:
        """Index of the body with ``role`` (brush or agent), or None."""
        return next((i for i, b in enumerate(self.bodies) if b.role == role), None)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How a scene is filmed: frame size in pixels, frame count and frame rate.

    The frame's height spans ``VIEW_HEIGHT`` world units, so ``px_per_unit = height / 10``
    and the view is ``width / px_per_unit`` units wide. Frame ``f`` is taken at ``f / fps``
    seconds. Pixel rows count from the top, world y counts up from the bottom.
    """

    width: int
    height: int
    frames: int
    fps: float

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not (isinstance(value, int) and MIN_SIZE <= value <= MAX_SIZE):
                raise InvalidInputError(
                    f"Frame {name} must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {value!r}."
                )
        if not (isinstance(self.frames, int) and self.frames >= 1):
            raise InvalidInputError(f"Frame count must be a whole number of at least 1, got {self.frames!r}.")
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise InvalidInputError(f"Frame rate must be above 0 and at most 1000 frames per second, got {self.fps!r}.")

    @property
    def px_per_unit(self) -> float:
        return self.height / VIEW_HEIGHT

    @property
    def view_width(self) -> float:
        return self.width / self.px_per_unit

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return (self.frames - 1) / self.fps

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.frames) / float(self.fps)
