"""Named scenario generators: each turns a random generator and a :class:`ClipSpec` into a :class:`Scene`.

The physical-law presets reproduce Kang et al. (2024), "How Far is Video Generation from World
Model": balls on white in a world 10 units tall, ``uniform`` (one ball moving horizontally),
``collision`` (two balls on a horizontal line colliding elastically, masses ``radius**2``)
and ``parabola`` (a ball thrown horizontally under g = 9.8). Their in-distribution ranges are
radius 0.7-1.5 and speed 1-4; the ``-ood`` variants draw radius from 0.3-0.6 or 1.5-2.0 and
speed from 0-0.8 or 4.5-6.0 (each band picked at random).

The other scenarios add variety for training: several shapes, backgrounds, a camera, an
occluder, a paint brush and a player. Every object in a clip has its own colour.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from kinetoscope.errors import InvalidInputError
from kinetoscope.world.entities import Background, Body, Camera, ClipSpec, Occluder, Scene
from kinetoscope.world.vocabulary import (
    ACTIONS,
    BACKGROUND_COLORS,
    FLOOR_COLORS,
    GRAVITY,
    OBJECT_COLORS,
    OCCLUDER_COLOR,
    PRESET_COLORS,
    SHAPES,
    VIEW_HEIGHT,
)

Range = tuple[float, float]
IN_RADIUS: tuple[Range, ...] = ((0.7, 1.5),)
IN_SPEED: tuple[Range, ...] = ((1.0, 4.0),)
OOD_RADIUS: tuple[Range, ...] = ((0.3, 0.6), (1.5, 2.0))
OOD_SPEED: tuple[Range, ...] = ((0.0, 0.8), (4.5, 6.0))


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    generate: Callable[[np.random.Generator, ClipSpec], Scene]


def _draw(rng: np.random.Generator, bands: tuple[Range, ...]) -> float:
    """A value uniform in one of the bands, the band picked uniformly."""
    low, high = bands[int(rng.integers(len(bands)))] if len(bands) > 1 else bands[0]
    return float(rng.uniform(low, high))


def _between(rng: np.random.Generator, low: float, high: float) -> float:
    """Uniform in [low, high], or the midpoint when the interval is empty (very narrow views)."""
    return float(rng.uniform(low, high)) if high > low else (low + high) / 2


def _colors(rng: np.random.Generator, count: int, palette: tuple[str, ...] = OBJECT_COLORS) -> list[str]:
    return [palette[i] for i in rng.permutation(len(palette))[:count]]


def _shape(rng: np.random.Generator) -> str:
    return SHAPES[int(rng.integers(len(SHAPES)))]


def _heading(rng: np.random.Generator, speed: float) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * math.pi)
    return speed * math.cos(angle), speed * math.sin(angle)


def _background(rng: np.random.Generator, kinds: tuple[str, ...] = ("plain", "gradient", "floor")) -> Background:
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "plain":
        return Background("plain", (_colors(rng, 1, BACKGROUND_COLORS)[0],))
    if kind == "gradient":
        return Background("gradient", tuple(_colors(rng, 2, BACKGROUND_COLORS)))
    sky = _colors(rng, 1, BACKGROUND_COLORS)[0]
    tiles = tuple(_colors(rng, 2, FLOOR_COLORS))
    return Background(
        "floor", (sky, *tiles), floor_height=float(rng.uniform(1.0, 2.0)), tile=float(rng.uniform(0.8, 1.5))
    )


def _floor_y(background: Background) -> float:
    """Bodies rest on the drawn floor when there is one, else on the bottom of the view."""
    return background.floor_height if background.kind == "floor" else 0.0


def _place(
    rng: np.random.Generator, radii: list[float], box: tuple[float, float, float, float], tries: int = 200
) -> list[tuple[float, tuple[float, float]]]:
    """``(radius, position)`` for discs of ``radii`` inside ``box`` (x0, x1, y0, y1), none overlapping.

    A disc that finds no room in ``tries`` draws is left out, so fewer may come back.
    """
    x0, x1, y0, y1 = box
    placed: list[tuple[float, tuple[float, float]]] = []
    for r in radii:
        if 2 * r > min(x1 - x0, y1 - y0):
            continue
        for _ in range(tries):
            x, y = _between(rng, x0 + r, x1 - r), _between(rng, y0 + r, y1 - r)
            if all(math.hypot(x - px, y - py) > r + pr + 0.05 for pr, (px, py) in placed):
                placed.append((r, (x, y)))
                break
    return placed


def _still_bodies(rng: np.random.Generator, placed: list[tuple[float, tuple[float, float]]]) -> list[Body]:
    """Random shapes, each in its own colour, at the placed spots."""
    colors = _colors(rng, len(placed))
    return [Body(_shape(rng), c, r, p) for c, (r, p) in zip(colors, placed)]


# ---------------------------------------------------------------- the physical-law presets
def _uniform(ood: bool) -> Callable[[np.random.Generator, ClipSpec], Scene]:
    def generate(rng: np.random.Generator, spec: ClipSpec) -> Scene:
        radius = _draw(rng, OOD_RADIUS if ood else IN_RADIUS)
        speed = _draw(rng, OOD_SPEED if ood else IN_SPEED)
        direction = 1.0 if rng.random() < 0.5 else -1.0
        # Start in the half of the view it moves away from, so it stays in view longest.
        half = spec.view_width / 2
        x = _between(rng, radius, half) if direction > 0 else _between(rng, half, spec.view_width - radius)
        y = _between(rng, radius, VIEW_HEIGHT - radius)
        ball = Body("ball", _colors(rng, 1, PRESET_COLORS)[0], radius, (x, y), (direction * speed, 0.0))
        return Scene(bodies=(ball,))

    return generate


def _collision(ood: bool) -> Callable[[np.random.Generator, ClipSpec], Scene]:
    def generate(rng: np.random.Generator, spec: ClipSpec) -> Scene:
        radius = [_draw(rng, OOD_RADIUS if ood else IN_RADIUS) for _ in range(2)]
        speed = [_draw(rng, OOD_SPEED if ood else IN_SPEED) for _ in range(2)]
        # They meet a quarter to a half of the way through the clip, in the middle of the view.
        meet = rng.uniform(0.25, 0.5) * spec.duration
        gap = min((speed[0] + speed[1]) * meet, max(spec.view_width - 2 * radius[0] - 2 * radius[1], 0.0))
        left = (spec.view_width - 2 * radius[0] - gap - 2 * radius[1]) / 2
        y = _between(rng, max(radius), VIEW_HEIGHT - max(radius))
        colors = _colors(rng, 2, PRESET_COLORS)
        a = Body("ball", colors[0], radius[0], (left + radius[0], y), (speed[0], 0.0))
        b = Body("ball", colors[1], radius[1], (left + 2 * radius[0] + gap + radius[1], y), (-speed[1], 0.0))
        return Scene(bodies=(a, b))

    return generate


def _parabola(ood: bool) -> Callable[[np.random.Generator, ClipSpec], Scene]:
    def generate(rng: np.random.Generator, spec: ClipSpec) -> Scene:
        radius = _draw(rng, OOD_RADIUS if ood else IN_RADIUS)
        speed = _draw(rng, OOD_SPEED if ood else IN_SPEED)
        direction = 1.0 if rng.random() < 0.5 else -1.0
        half = spec.view_width / 2
        x = _between(rng, radius, half) if direction > 0 else _between(rng, half, spec.view_width - radius)
        y = _between(rng, 0.6 * VIEW_HEIGHT, VIEW_HEIGHT - radius)
        ball = Body("ball", _colors(rng, 1, PRESET_COLORS)[0], radius, (x, y), (direction * speed, 0.0))
        return Scene(bodies=(ball,), gravity=GRAVITY)

    return generate


# ---------------------------------------------------------------- variety
def _static(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    background = _background(rng)
    floor = _floor_y(background)
    radii = [float(rng.uniform(0.5, 1.5)) for _ in range(int(rng.integers(1, 5)))]
    bodies = _still_bodies(rng, _place(rng, radii, (0.0, spec.view_width, floor, VIEW_HEIGHT)))
    return Scene(bodies=tuple(bodies) or _fallback_body(rng, spec, floor), background=background, floor_y=floor)


def _fitting(radius: float, spec: ClipSpec) -> float:
    """``radius``, shrunk to fit a very narrow view (down to a few pixels wide) with room to move."""
    return min(radius, 0.4 * spec.view_width)


def _fallback_body(rng: np.random.Generator, spec: ClipSpec, floor: float) -> tuple[Body, ...]:
    """One small body in the middle, for views too narrow to place anything else."""
    position = (spec.view_width / 2, (floor + VIEW_HEIGHT) / 2)
    return (Body(_shape(rng), _colors(rng, 1)[0], _fitting(0.4, spec), position),)


def _solo(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """One shape moving in a straight line in one of the eight caption directions, in view throughout:
    the scene behind the prompts users type first ("a red star moves up-left")."""
    background = _background(rng, ("plain", "gradient"))
    radius = float(rng.uniform(0.8, 1.5))
    # Within 10 degrees of a direction word's centre, so the caption's heading is never a near miss.
    angle = math.radians(45.0 * int(rng.integers(8)) + float(rng.uniform(-10.0, 10.0)))
    room_x, room_y = spec.view_width - 2 * radius, VIEW_HEIGHT - 2 * radius
    duration = max(spec.duration, 1e-6)
    # The fastest speed whose whole path fits in the view along each axis the object moves on.
    fits = min(
        room_x / max(abs(math.cos(angle)) * duration, 1e-6), room_y / max(abs(math.sin(angle)) * duration, 1e-6)
    )
    speed = min(float(rng.uniform(1.5, 4.0)), 0.9 * fits)
    vx, vy = speed * math.cos(angle), speed * math.sin(angle)
    # The path's midpoint anywhere that keeps both of its ends in view.
    half_x, half_y = abs(vx) * duration / 2, abs(vy) * duration / 2
    mid_x = _between(rng, radius + half_x, spec.view_width - radius - half_x)
    mid_y = _between(rng, radius + half_y, VIEW_HEIGHT - radius - half_y)
    start = (mid_x - vx * duration / 2, mid_y - vy * duration / 2)
    body = Body(_shape(rng), _colors(rng, 1)[0], radius, start, (vx, vy))
    return Scene(bodies=(body,), background=background)


def _bounce(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    background = _background(rng)
    floor = _floor_y(background)
    radii = [float(rng.uniform(0.5, 1.3)) for _ in range(int(rng.integers(1, 4)))]
    still = _still_bodies(rng, _place(rng, radii, (0.0, spec.view_width, (floor + VIEW_HEIGHT) / 2, VIEW_HEIGHT)))
    bodies = tuple(
        dataclasses.replace(b, velocity=(float(rng.uniform(-4, 4)), float(rng.uniform(-2, 3)))) for b in still
    ) or _fallback_body(rng, spec, floor)
    walls = ("floor", "ceiling", "left", "right")
    return Scene(bodies=bodies, gravity=GRAVITY, walls=walls, floor_y=floor, background=background)


def _billiards(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    background = _background(rng)
    floor = _floor_y(background)
    radii = [float(rng.uniform(0.5, 1.2)) for _ in range(int(rng.integers(2, 6)))]
    still = _still_bodies(rng, _place(rng, radii, (0.0, spec.view_width, floor, VIEW_HEIGHT)))
    bodies = tuple(
        dataclasses.replace(b, velocity=_heading(rng, float(rng.uniform(1.5, 4.5)))) for b in still
    ) or _fallback_body(rng, spec, floor)
    walls = ("floor", "ceiling", "left", "right")
    return Scene(bodies=bodies, walls=walls, floor_y=floor, background=background)


def _crossing(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """Objects start outside the view, cross it in their own lanes, and leave."""
    background = _background(rng, ("plain", "gradient"))
    count = int(rng.integers(1, 4))
    lane = VIEW_HEIGHT / count
    colors = _colors(rng, count)
    plan = max(spec.duration, 1.0)
    bodies = []
    for k in range(count):
        r = float(rng.uniform(0.4, min(1.2, lane / 2 - 0.05)))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        # Cross the view plus both margins in 60-90% of the clip.
        speed = (spec.view_width + 2 * r + 1.0) / (plan * rng.uniform(0.6, 0.9))
        x = -r - 0.5 if direction > 0 else spec.view_width + r + 0.5
        y = _between(rng, k * lane + r, (k + 1) * lane - r)
        bodies.append(Body(_shape(rng), colors[k], r, (x, y), (direction * speed, 0.0)))
    return Scene(bodies=tuple(bodies), background=background)


def _occlusion(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """A bar in the middle of the view; one or two objects pass behind it and come out."""
    background = _background(rng, ("plain", "gradient"))
    bar = min(rng.uniform(1.6, 2.6), spec.view_width / 3)
    centre = spec.view_width * rng.uniform(0.45, 0.55)
    occluder = Occluder(centre - bar / 2, centre + bar / 2, -1.0, VIEW_HEIGHT + 1.0, OCCLUDER_COLOR)
    count = int(rng.integers(1, 3))
    lane = VIEW_HEIGHT / count
    colors = _colors(rng, count)
    plan = max(spec.duration, 1.0)
    bodies = []
    for k in range(count):
        # Small enough to hide completely behind the bar, for at least 1.5 frames.
        r = float(rng.uniform(0.3, max(0.31, min(1.0, 0.3 * bar, lane / 2 - 0.05))))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        start = _between(rng, max(r, occluder.x0 - r - 2.5), occluder.x0 - r - 0.3)
        travel = occluder.x1 + r + 0.3 - start  # until fully out on the far side
        if direction < 0:
            start = 2 * centre - start
        speed = travel / (plan * rng.uniform(0.6, 0.85))
        if bar > 2 * r:  # slow enough to be seen fully hidden
            speed = min(speed, (bar - 2 * r) * spec.fps / 1.5)
        y = _between(rng, k * lane + r, (k + 1) * lane - r)
        bodies.append(Body(_shape(rng), colors[k], r, (start, y), (direction * speed, 0.0)))
    return Scene(bodies=tuple(bodies), background=background, occluder=occluder)


def _pan(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """Still objects spread over a scene 2-3 views wide; the camera pans to its end and back."""
    background = _background(rng, ("floor",))
    floor = _floor_y(background)
    width = spec.view_width * float(rng.uniform(2.0, 3.0))
    radii = [float(rng.uniform(0.5, 1.3)) for _ in range(int(rng.integers(3, 7)))]
    bodies = tuple(_still_bodies(rng, _place(rng, radii, (0.0, width, floor, VIEW_HEIGHT)))) or _fallback_body(
        rng, spec, floor
    )
    return Scene(
        bodies=bodies,
        floor_y=floor,
        scene_width=width,
        background=background,
        camera=Camera(pan=width - spec.view_width),
    )


def _paint(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """A brush bounces around the view and leaves a persistent trail of paint."""
    background = _background(rng, ("plain",))
    r = _fitting(float(rng.uniform(0.35, 0.6)), spec)
    position = (_between(rng, r, spec.view_width - r), _between(rng, r, VIEW_HEIGHT - r))
    brush = Body("ball", _colors(rng, 1)[0], r, position, _heading(rng, float(rng.uniform(2.0, 4.5))), role="brush")
    walls = ("floor", "ceiling", "left", "right")
    return Scene(bodies=(brush,), walls=walls, background=background, paint_width=r)


def _agent(rng: np.random.Generator, spec: ClipSpec) -> Scene:
    """A player moved by actions (up, down, left, right, stay) among a few still items."""
    background = _background(rng)
    floor = _floor_y(background)
    r = _fitting(float(rng.uniform(0.5, 0.8)), spec)
    speed = float(rng.uniform(2.0, 4.0))
    box = (0.0, spec.view_width, floor, VIEW_HEIGHT)
    start = (_between(rng, r, spec.view_width - r), _between(rng, floor + r, VIEW_HEIGHT - r))
    items = _place(rng, [float(rng.uniform(0.4, 0.8)) for _ in range(int(rng.integers(0, 3)))], box)
    # Items are scenery the player passes over; keep them clear of its start.
    items = [(ir, p) for ir, p in items if math.hypot(p[0] - start[0], p[1] - start[1]) > ir + r]
    bodies = _still_bodies(rng, items)
    used = {b.color for b in bodies}
    color = next(c for c in _colors(rng, len(OBJECT_COLORS)) if c not in used)
    bounds = (r, spec.view_width - r, floor + r, VIEW_HEIGHT - r)
    actions = _action_sequence(rng, spec.frames - 1, start, speed / spec.fps, bounds)
    bodies.append(Body(_shape(rng), color, r, start, role="agent"))
    return Scene(bodies=tuple(bodies), floor_y=floor, background=background, actions=actions, agent_speed=speed)


def _action_sequence(
    rng: np.random.Generator,
    steps: int,
    start: tuple[float, float],
    step: float,
    bounds: tuple[float, float, float, float],
) -> tuple[str, ...]:
    """Runs of 2-6 repeated actions; a step that would leave ``bounds`` becomes "stay"."""
    names = list(ACTIONS)
    x, y = start
    actions: list[str] = []
    while len(actions) < steps:
        action = names[int(rng.integers(len(names)))]
        for _ in range(min(int(rng.integers(2, 7)), steps - len(actions))):
            dx, dy = ACTIONS[action]
            nx, ny = x + dx * step, y + dy * step
            if not (bounds[0] <= nx <= bounds[1] and bounds[2] <= ny <= bounds[3]):
                action, nx, ny = "stay", x, y
            actions.append(action)
            x, y = nx, ny
    return tuple(actions)


_VARIETY = {
    "static": ("still shapes on a random background", _static),
    "solo": ("one shape moving in a straight line in any of eight directions, in view throughout", _solo),
    "bounce": ("shapes under gravity bouncing off the floor and walls, colliding elastically", _bounce),
    "billiards": ("shapes without gravity in a walled box, colliding elastically", _billiards),
    "crossing": ("shapes enter the frame on one side and leave on the other", _crossing),
    "occlusion": ("shapes pass behind a bar and come out the other side", _occlusion),
    "pan": ("the camera pans across a still scene wider than the frame and comes back", _pan),
    "paint": ("a brush bounces around and leaves a persistent trail of paint", _paint),
    "agent": ("a player moved by actions (up, down, left, right, stay) written in the caption", _agent),
}

_PRESETS = {
    "uniform": ("physical-law preset: one ball moving horizontally at constant speed", _uniform),
    "collision": ("physical-law preset: two balls on a horizontal line colliding elastically", _collision),
    "parabola": ("physical-law preset: a ball thrown horizontally under gravity", _parabola),
}


def _build_registry() -> dict[str, Scenario]:
    registry: dict[str, Scenario] = {}
    for name, (text, factory) in _PRESETS.items():
        registry[name] = Scenario(name, f"{text} (radius 0.7-1.5, speed 1-4)", factory(False))
    for name, (text, factory) in _PRESETS.items():
        registry[f"{name}-ood"] = Scenario(
            f"{name}-ood",
            f"{text}, out of distribution (radius 0.3-0.6 or 1.5-2.0, speed 0-0.8 or 4.5-6.0)",
            factory(True),
        )
    for name, (text, generate) in _VARIETY.items():
        registry[name] = Scenario(name, text, generate)
    return registry


SCENARIOS: dict[str, Scenario] = _build_registry()
#: What ``mixed`` picks from: every in-distribution scenario.
MIXED = tuple(name for name in SCENARIOS if not name.endswith("-ood"))
SCENARIOS["mixed"] = Scenario(
    "mixed", f"a random pick among {', '.join(MIXED)}", lambda rng, spec: _mixed(rng, spec)[1]
)


def _mixed(rng: np.random.Generator, spec: ClipSpec) -> tuple[str, Scene]:
    name = MIXED[int(rng.integers(len(MIXED)))]
    return name, SCENARIOS[name].generate(rng, spec)


def generate_scene(name: str, rng: np.random.Generator, spec: ClipSpec) -> tuple[str, Scene]:
    """``(scenario actually used, scene)``; ``mixed`` reports the scenario it picked."""
    if name not in SCENARIOS:
        raise InvalidInputError(f"Unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}.")
    if name == "mixed":
        return _mixed(rng, spec)
    return name, SCENARIOS[name].generate(rng, spec)
