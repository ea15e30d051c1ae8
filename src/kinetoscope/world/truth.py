"""A clip's ground truth: the documented, versioned JSON state other modules rely on.

:func:`build_state` runs a scene's physics for a :class:`ClipSpec` and returns a plain dict
(the schema is in docs/world.md, "Ground-truth state"; bump :data:`STATE_VERSION` on any
change to it). Everything is in world units (x right, y up, seconds); floats are rounded to
6 decimals so the JSON is short and byte-stable.

Visibility of an object in a frame, tested on points on and inside its outline:

- ``"out"``: no part of it is in the view;
- ``"occluded"``: some or all of what is in the view is behind the occluder;
- ``"partial"``: cut by the frame's edge, nothing behind the occluder;
- ``"visible"``: wholly in view and unhidden.

``visible_fraction`` is the share of its area that shows. Derived events: ``exit`` / ``enter``
(to / from "out"), ``occluded`` (first frame partly behind the occluder), ``reappear`` (first
frame no longer behind it while in view). Physics events (``bounce``, ``collision``) carry the
exact time; their ``frame`` is the first frame at or after it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kinetoscope.errors import InvalidInputError
from kinetoscope.world.entities import ClipSpec, Scene
from kinetoscope.world.physics import Trajectory, agent_path, simulate
from kinetoscope.world.shapes import sample_points
from kinetoscope.world.vocabulary import COLORS, VIEW_HEIGHT

STATE_VERSION = 1
VISIBILITY = ("visible", "partial", "occluded", "out")
AXES = "x right, y up, world units; pixel column = (x - camera_x) * px_per_unit, pixel row = height - (y - camera_y) * px_per_unit"
#: Order of simultaneous events in the list.
_EVENT_ORDER = ("collision", "bounce", "exit", "enter", "occluded", "reappear")


def build_state(scene: Scene, spec: ClipSpec, *, scenario: str = "custom", seed: int | None = None) -> dict[str, Any]:
    """Simulate ``scene`` for ``spec`` and return its ground-truth state (a JSON-ready dict)."""
    times = spec.times
    scene_width = spec.view_width if scene.scene_width is None else scene.scene_width
    trajectory = simulate(scene, spec.duration, scene_width)
    positions, velocities = trajectory.sample(times)
    agent = scene.role_index("agent")
    if agent is not None:
        if len(scene.actions) != spec.frames - 1:
            raise InvalidInputError(
                f"The agent needs one action per step, {spec.frames - 1} for {spec.frames} frames, got {len(scene.actions)}."
            )
        positions[:, agent], velocities[:, agent] = agent_path(
            scene.bodies[agent].position, scene.actions, scene.agent_speed, spec.fps
        )
    camera = scene.camera.offsets(times, spec.duration)
    labels, fractions = visibility(scene, positions, camera, spec.view_width)

    objects = [
        {
            "id": i,
            "shape": body.shape,
            "color": body.color,
            "rgb": list(COLORS[body.color]),
            "radius": _round(body.radius),
            "mass": _round(body.mass),
            "role": body.role,
            "position": _round(positions[:, i]),
            "velocity": _round(velocities[:, i]),
            "visibility": labels[i],
            "visible_fraction": _round(fractions[:, i]),
        }
        for i, body in enumerate(scene.bodies)
    ]
    events = _physics_events(trajectory, spec.fps) + _view_events(labels, spec.fps)
    events.sort(key=lambda e: (e["time"], _EVENT_ORDER.index(e["type"]), e["objects"]))
    return {
        "state_version": STATE_VERSION,
        "scenario": scenario,
        "seed": seed,
        "width": spec.width,
        "height": spec.height,
        "frames": spec.frames,
        "fps": float(spec.fps),
        "world": {
            "axes": AXES,
            "view_height": VIEW_HEIGHT,
            "view_width": _round(spec.view_width),
            "px_per_unit": _round(spec.px_per_unit),
            "scene_width": _round(scene_width),
            "gravity": _round(scene.gravity),
            "floor_y": _round(scene.floor_y),
            "walls": [w for w in ("floor", "ceiling", "left", "right") if w in scene.walls],
        },
        "background": {
            "kind": scene.background.kind,
            "colors": list(scene.background.colors),
            "rgb": [list(COLORS[c]) for c in scene.background.colors],
            "floor_height": _round(scene.background.floor_height),
            "tile": _round(scene.background.tile),
        },
        "camera": {
            "motion": "pan" if scene.camera.pan > 0 else "static",
            "pan": _round(scene.camera.pan),
            "offset": _round(camera),
        },
        "occluder": _occluder(scene),
        "objects": objects,
        "events": events,
        "actions": None if scene.actions is None else list(scene.actions),
        "paint": _paint(scene, trajectory, times),
    }


def visibility(
    scene: Scene, positions: np.ndarray, camera: np.ndarray, view_width: float
) -> tuple[list[list[str]], np.ndarray]:
    """Per object the visibility label of each frame, and ``(T, N)`` visible fractions."""
    frames, count = positions.shape[:2]
    fractions = np.zeros((frames, count))
    labels = []
    occluder = scene.occluder
    for i, body in enumerate(scene.bodies):
        interior, outline = sample_points(body.shape)
        points = positions[:, i, None, :] + body.radius * np.concatenate([interior, outline])  # (T, K, 2)
        x, y = points[..., 0], points[..., 1]
        cam_x, cam_y = camera[:, 0, None], camera[:, 1, None]
        in_view = (x >= cam_x) & (x <= cam_x + view_width) & (y >= cam_y) & (y <= cam_y + VIEW_HEIGHT)
        hidden = np.zeros_like(in_view)
        if occluder is not None:
            hidden = (x > occluder.x0) & (x < occluder.x1) & (y > occluder.y0) & (y < occluder.y1)
        shown = in_view & ~hidden
        fractions[:, i] = shown[:, : len(interior)].mean(axis=1)
        code = np.where(
            ~in_view.any(axis=1), 3, np.where((in_view & hidden).any(axis=1), 2, np.where(in_view.all(axis=1), 0, 1))
        )
        labels.append([VISIBILITY[c] for c in code])
    return labels, fractions


def _physics_events(trajectory: Trajectory, fps: float) -> list[dict[str, Any]]:
    events = []
    for e in trajectory.events:
        event = {"type": e.kind, "frame": _frame_at(e.time, fps), "time": _round(e.time), "objects": list(e.bodies)}
        if e.wall is not None:
            event["wall"] = e.wall
        events.append(event)
    return events


def _view_events(labels: list[list[str]], fps: float) -> list[dict[str, Any]]:
    events = []
    for i, seq in enumerate(labels):
        for f in range(1, len(seq)):
            before, now = seq[f - 1], seq[f]
            kinds = []
            if (before == "out") != (now == "out"):
                kinds.append("exit" if now == "out" else "enter")
            if now == "occluded" and before != "occluded":
                kinds.append("occluded")
            if before == "occluded" and now in ("visible", "partial"):
                kinds.append("reappear")
            events += [{"type": k, "frame": f, "time": _round(f / fps), "objects": [i]} for k in kinds]
    return events


def _frame_at(time: float, fps: float) -> int:
    """The first frame taken at or after ``time`` (a hair of tolerance for float error)."""
    return max(0, math.ceil(time * fps - 1e-6))


def _occluder(scene: Scene) -> dict[str, Any] | None:
    o = scene.occluder
    if o is None:
        return None
    return {
        "color": o.color,
        "rgb": list(COLORS[o.color]),
        "x0": _round(o.x0),
        "x1": _round(o.x1),
        "y0": _round(o.y0),
        "y1": _round(o.y1),
    }


def _paint(scene: Scene, trajectory: Trajectory, times: np.ndarray) -> dict[str, Any] | None:
    """The brush's trail: the polyline through its positions at every frame and every event.

    Between events a brush without gravity moves in straight lines, so this path is exact.
    """
    brush = scene.role_index("brush")
    if brush is None:
        return None
    event_times = [e.time for e in trajectory.events if brush in e.bodies]
    knots = np.unique(np.concatenate([times, event_times]))
    positions, _ = trajectory.sample(knots)
    body = scene.bodies[brush]
    return {
        "brush": brush,
        "color": body.color,
        "rgb": list(COLORS[body.color]),
        "width": _round(scene.paint_width),
        "path": _round(np.concatenate([knots[:, None], positions[:, brush]], axis=1)),
    }


def _round(value: Any) -> Any:
    """Round to 6 decimals for short, stable JSON (``+ 0.0`` turns -0.0 into 0.0)."""
    if isinstance(value, np.ndarray):
        return (np.round(value, 6) + 0.0).tolist()
    return round(float(value), 6) + 0.0
