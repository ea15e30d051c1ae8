"""Exact event-driven physics: bodies fly on analytic parabolas between events.

Between two events every free body moves as ``p + v t + a t^2 / 2`` with ``a = (0, -g)``.
The next event is found in closed form: the first time a body's gap to a wall (a quadratic
in t) or to another body (a quadratic in t, since uniform gravity cancels in relative
motion) closes while they approach. The state is advanced exactly to it, the event is
resolved, and the search repeats. Bounces and collisions are perfectly elastic, so energy
and (between walls) momentum are conserved up to float rounding, and positions at any time
come from the analytic segment that contains it, vectorised over all frames at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinetoscope.errors import InvalidInputError
from kinetoscope.world.entities import Scene
from kinetoscope.world.vocabulary import ACTIONS, VIEW_HEIGHT, WALLS

#: A scene needing more events than this is a bug in the scene (e.g. a body pinned in a corner).
MAX_EVENTS = 100_000

#: Per wall (in ``WALLS`` order): the axis it stops (0 = x, 1 = y) and the side bodies stay on
#: (+1: above / right of it, -1: below / left of it).
_WALL_AXIS = np.array([1, 1, 0, 0])
_WALL_SIDE = np.array([1.0, -1.0, 1.0, -1.0])


@dataclasses.dataclass(frozen=True)
class Event:
    """A bounce (``wall`` set, one body) or a collision (two bodies), at ``time`` seconds."""

    kind: str
    time: float
    bodies: tuple[int, ...]
    wall: str | None = None


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Piecewise-analytic motion: segment ``k`` starts at ``starts[k]`` with ``positions[k]``, ``velocities[k]``."""

    starts: np.ndarray  # (K,)
    positions: np.ndarray  # (K, N, 2)
    velocities: np.ndarray  # (K, N, 2)
    acceleration: np.ndarray  # (N, 2)
    events: tuple[Event, ...]

    def sample(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities ``(T, N, 2)`` at ``times``; at an event's instant, the state after it."""
        times = np.asarray(times, dtype=np.float64)
        k = np.searchsorted(self.starts, times, side="right") - 1
        dt = (times - self.starts[k])[:, None, None]
        positions = self.positions[k] + self.velocities[k] * dt + 0.5 * self.acceleration * dt**2
        velocities = self.velocities[k] + self.acceleration * dt
        return positions, velocities


def simulate(scene: Scene, duration: float, scene_width: float) -> Trajectory:
    """Run the scene's physics from t=0 to ``duration`` seconds. Agents stay put (see :func:`agent_path`)."""
    bodies = scene.bodies
    n = len(bodies)
    position = np.array([b.position for b in bodies], dtype=np.float64).reshape(n, 2)
    velocity = np.array([b.velocity for b in bodies], dtype=np.float64).reshape(n, 2)
    free = np.array([b.role != "agent" for b in bodies], dtype=bool)
    velocity[~free] = 0.0
    acceleration = np.zeros((n, 2))
    acceleration[free, 1] = -scene.gravity
    radius = np.array([b.radius for b in bodies])
    _check_room(scene, scene_width, radius[free])
    world = _Bounds(scene, scene_width, radius, free)
    mass = np.array([b.mass for b in bodies])

    t = 0.0
    starts, positions, velocities, events = [0.0], [position], [velocity], []
    while True:
        dt, event = world.next_event(position, velocity, acceleration)
        if t + dt > duration:
            break
        t += dt
        position = position + velocity * dt + 0.5 * acceleration * dt * dt
        velocity = velocity + acceleration * dt
        velocity = _resolve(event, position, velocity, mass)
        events.append(Event(event[0], t, event[1], event[2]))
        starts.append(t)
        positions.append(position)
        velocities.append(velocity)
        if len(events) > MAX_EVENTS:
            raise RuntimeError(f"The scene needed more than {MAX_EVENTS} bounces and collisions; bodies are stuck.")
    return Trajectory(np.array(starts), np.stack(positions), np.stack(velocities), acceleration, tuple(events))


def _check_room(scene: Scene, scene_width: float, radius: np.ndarray) -> None:
    """Refuse bodies wider than the space between two facing walls: they would bounce forever."""
    widest = float(radius.max(initial=0.0)) * 2
    if {"left", "right"} <= set(scene.walls) and widest > scene_width:
        raise InvalidInputError(f"A body {widest:g} units wide does not fit between walls {scene_width:g} units apart.")
    if {"floor", "ceiling"} <= set(scene.walls) and widest > VIEW_HEIGHT - scene.floor_y:
        raise InvalidInputError(
            f"A body {widest:g} units tall does not fit between the floor and the ceiling, {VIEW_HEIGHT - scene.floor_y:g} units apart."
        )


class _Bounds:
    """The walls and body pairs that can produce events, with their gap functions."""

    def __init__(self, scene: Scene, scene_width: float, radius: np.ndarray, free: np.ndarray):
        # A body's gap to a wall is  side * (coordinate - limit), positive while it is inside.
        walls = np.array([w in scene.walls for w in WALLS])
        limits = np.array([scene.floor_y, VIEW_HEIGHT, 0.0, scene_width])
        self.limit = limits[None, :] + _WALL_SIDE[None, :] * radius[:, None]  # (N, 4)
        self.wall_mask = free[:, None] & walls[None, :]
        i, j = np.triu_indices(len(radius), k=1)
        both = free[i] & free[j]
        self.i, self.j = i[both], j[both]
        self.reach = radius[self.i] + radius[self.j]

    def next_event(self, p: np.ndarray, v: np.ndarray, a: np.ndarray) -> tuple[float, tuple]:
        """Seconds until the next event and ``(kind, bodies, wall)``; ``inf`` when none comes."""
        best, event = np.inf, ("none", (), None)
        if self.wall_mask.any():
            gap = _WALL_SIDE * (p[:, _WALL_AXIS] - self.limit)
            closing = _WALL_SIDE * v[:, _WALL_AXIS]
            accel = _WALL_SIDE * a[:, _WALL_AXIS]
            times = np.where(self.wall_mask, _first_contact(gap, closing, accel), np.inf)
            k = int(np.argmin(times))
            body, wall = divmod(k, len(WALLS))
            if times.flat[k] < best:
                best, event = float(times.flat[k]), ("bounce", (body,), WALLS[wall])
        if len(self.i):
            dp = p[self.j] - p[self.i]
            dv = v[self.j] - v[self.i]
            times = _pair_contact(dp, dv, self.reach)
            k = int(np.argmin(times))
            if times[k] < best:
                best, event = float(times[k]), ("collision", (int(self.i[k]), int(self.j[k])), None)
        return best, event


def _first_contact(s0: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Earliest t >= 0 where the gap ``s0 + s1 t + s2 t^2 / 2`` reaches 0 while closing; else inf.

    The closing root is ``(-s1 - sqrt(D)) / s2`` with ``D = s1^2 - 2 s2 s0``; written as
    ``2 s0 / (-s1 + sqrt(D))`` when ``s1 < 0`` it loses no digits to cancellation, and also
    covers ``s2 = 0``. A gap already closed (``s0 <= 0``) while closing gives t = 0.
    """
    disc = s1 * s1 - 2.0 * s2 * s0
    root = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s1 < 0, 2.0 * s0 / (-s1 + root), (-s1 - root) / s2)
    t = np.where(np.isnan(t) | (disc <= 0), np.inf, t)
    return np.where(t < 0, np.where(s1 < 0, 0.0, np.inf), t)


def _pair_contact(dp: np.ndarray, dv: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Earliest t >= 0 where ``|dp + dv t| = reach`` while the pair approaches; else inf."""
    a = np.einsum("ki,ki->k", dv, dv)
    b = np.einsum("ki,ki->k", dp, dv)
    c = np.einsum("ki,ki->k", dp, dp) - reach * reach
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = c / (-b + np.sqrt(np.maximum(disc, 0.0)))
    approaching = (b < 0) & (disc > 0)
    return np.where(approaching, np.maximum(t, 0.0), np.inf)


def _resolve(event: tuple, p: np.ndarray, v: np.ndarray, mass: np.ndarray) -> np.ndarray:
    kind, bodies, wall = event
    v = v.copy()
    if kind == "bounce":
        v[bodies[0], _WALL_AXIS[WALLS.index(wall)]] *= -1.0
        return v
    i, j = bodies
    normal = p[j] - p[i]
    normal /= np.linalg.norm(normal)
    approach = float(np.dot(v[i] - v[j], normal))
    total = mass[i] + mass[j]
    v[i] -= 2.0 * mass[j] / total * approach * normal
    v[j] += 2.0 * mass[i] / total * approach * normal
    return v


def agent_path(
    start: tuple[float, float], actions: tuple[str, ...], speed: float, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities ``(T, 2)`` of an agent: ``actions[f]`` moves it from frame f to f+1.

    The velocity at frame f is that of the step it is about to take (zero after the last one).
    """
    steps = np.array([ACTIONS[a] for a in actions], dtype=np.float64).reshape(-1, 2) * speed
    positions = np.asarray(start, dtype=np.float64) + np.concatenate([np.zeros((1, 2)), np.cumsum(steps / fps, axis=0)])
    velocities = np.concatenate([steps, np.zeros((1, 2))])
    return positions, velocities
