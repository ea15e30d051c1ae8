"""Prompt adherence: the share of a prompt's claims the frames show, with nothing but the frames.

The claims are the language's reading of the prompt (:func:`~kinetoscope.language.claims.prompt_claims`);
each named colour is tracked as one object (:class:`_Track`) from the detections of
:mod:`.detect`, and its shape, motion, bounces and collisions are read off that track; the
count claim counts objects, so a colour drawn twice counts twice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from kinetoscope.eval.detect import Detection, count_objects, detect_video, to_world
from kinetoscope.eval.metrics import MetricResult, scored
from kinetoscope.language.claims import ObjectClaim, PromptClaims, prompt_claims
from kinetoscope.world.vocabulary import DIRECTIONS, VIEW_HEIGHT, WALL_WORDS, place_phrase, place_span

#: What the count claim counts (a bundle's legs record it: before, it counted colours).
COUNTS = "objects"
#: An object counts as present when detected in at least this many frames.
MIN_FRAMES_PRESENT = 3
#: A velocity change (world units / s) beyond gravity's that marks a bounce or a collision.
IMPULSE = 1.0
#: Slower than this (world units / s) is standing still.
STILL_SPEED = 0.3
#: The measured direction may be this far (degrees) from the named one (one sector either side).
DIRECTION_TOLERANCE = 67.5
#: A named start holds when frame 0 shows the object's centre within this many world units of that
#: ninth of the view (a centre on the line between two ninths is in either).
START_MARGIN = 0.5


def prompt_adherence(
    frames: np.ndarray, prompt: str, *, fps: float, detections: list[list[Detection]] | None = None
) -> MetricResult:
    """Share of the prompt's claims the video shows: colours, shapes, count, starts, directions, bounces, collisions.

    Needs nothing but the frames: each named colour must be detected in at least
    ``MIN_FRAMES_PRESENT`` frames (all of them in shorter clips; images are checked for
    colours, shapes and count only), with the named shape by majority over the frames where it is
    wholly in view; the objects present must number the count, each colour counted by its median
    over the frames it is seen in (one red ball drawn twice is two objects); a named start ("at the top
    left") must hold in frame 0 within ``START_MARGIN``; a named direction must be
    within ``DIRECTION_TOLERANCE`` of the initial velocity (fitted on the frames before its first
    bounce or collision), ``stays still`` below ``STILL_SPEED``; ``falls`` means it goes down; a
    bounce is a reversal of the velocity component against the named wall, a collision an impulse
    on both objects in the same frame (±1) while they touch. Directions are read in the frame's
    own axes, so they are not checked when the prompt moves the camera, nor when the prompt has
    the object bounce or collide by frame 2 (before its first velocity can be seen); neither
    are events the prompt places in the first or last two frames.
    """
    claims = prompt_claims(prompt)
    if claims.empty:
        return MetricResult("adherence", None, "share of claims", None, 0, "a prompt with nothing the detectors can check")
    detections = detect_video(frames) if detections is None else detections
    tracks = _colour_tracks(frames, detections, fps=fps)
    view_width = frames.shape[2] * VIEW_HEIGHT / frames.shape[1]
    checks = _check_claims(claims, tracks, len(frames), fps, view_width)
    passed = sum(ok for _, _, ok, _ in checks)
    return scored(
        "adherence",
        passed / len(checks),
        "share of claims",
        len(checks),
        f"{len(checks)} claims of the prompt",
        higher_is_better=True,
        claims=[{"kind": kind, "claim": claim, "passed": ok, "seen": seen} for kind, claim, ok, seen in checks],
    )


@dataclasses.dataclass
class _Track:
    """The largest object of one colour in each frame, in world units (frame axes, static camera).

    Positions come from the frames where it is wholly in view (not cut by the frame's edge),
    or from all frames when it is wholly in view in fewer than two.
    """

    seen: int  # frames with a detection of this colour
    objects: int  # how many objects of this colour a frame shows: the lower median over those frames
    times: np.ndarray  # (K,) seconds of the frames where it is wholly in view
    positions: np.ndarray  # (K, 2)
    radii: np.ndarray  # (K,)
    shape: str  # majority over the same frames
    impulses: list[tuple[float, np.ndarray, np.ndarray]]  # (time, velocity before, velocity after)
    start: np.ndarray | None  # (x, y) of its centre in frame 0, cut by the edge or not; None if not seen there


def _colour_tracks(frames: np.ndarray, detections: list[list[Detection]], *, fps: float) -> dict[str, _Track]:
    height = frames.shape[1]
    seen: dict[str, list[tuple[int, Detection]]] = {}
    counts: dict[str, list[int]] = {}
    for t, found in enumerate(detections):
        for color, count in count_objects(frames[t], found).items():
            seen.setdefault(color, []).append((t, max((d for d in found if d.color == color), key=lambda d: d.area)))
            counts.setdefault(color, []).append(count)
    tracks = {}
    for color, items in seen.items():
        whole = [(t, d) for t, d in items if not d.cut]
        if len(whole) < 2:  # e.g. a square flush with the frame's edge the whole time
            whole = items
        shapes = [d.shape for _, d in whole]
        times = np.array([t / fps for t, _ in whole])
        positions = np.array([to_world(d.center, height=height) for _, d in whole]).reshape(-1, 2)
        radii = np.array([d.radius * VIEW_HEIGHT / height for _, d in whole])
        shape = max(set(shapes), key=shapes.count)
        objects = sorted(counts[color])[(len(items) - 1) // 2]
        start = to_world(items[0][1].center, height=height) if items[0][0] == 0 else None
        impulses = _impulses(times, positions, 1 / fps)
        tracks[color] = _Track(len(items), objects, times, positions, radii, shape, impulses, start)
    return tracks


def _impulses(times: np.ndarray, positions: np.ndarray, frame_time: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Sudden velocity changes beyond the track's steady acceleration (gravity): ``(time, before, after)``.

    Velocities between consecutive detections are compared across one interval, so an event in
    the middle of an interval (which mixes before and after) shows in full. Gaps of up to three
    frames (an object cut by the frame's edge as it bounces) are bridged.
    """
    if len(times) < 4:
        return []
    gaps = np.diff(times)
    velocity = np.diff(positions, axis=0) / gaps[:, None]  # at the midpoints between detections
    middle = (times[:-1] + times[1:]) / 2
    change = velocity[2:] - velocity[:-2]  # around interval j = 1 .. K-3
    span = middle[2:] - middle[:-2]
    around = np.stack([gaps[:-2], gaps[1:-1], gaps[2:]])
    usable = (around <= 3.5 * frame_time).all(axis=0)
    steady = (around <= 1.5 * frame_time).all(axis=0)
    if not steady.any():
        return []
    acceleration = np.median(change[steady] / span[steady, None], axis=0)
    jump = np.where(usable, np.linalg.norm(change - acceleration * span[:, None], axis=1), 0.0)
    runs, count = ndimage.label(jump > IMPULSE)
    impulses = []
    for label in range(1, count + 1):
        where = np.flatnonzero(runs == label)
        j = where[np.argmax(jump[where])] + 1  # the interval holding the event
        impulses.append((float(middle[j]), velocity[where[0]], velocity[where[-1] + 2]))
    return impulses


#: What each adherence claim is about (``kind`` in the claims of a result).
CLAIM_KINDS = ("colour", "shape", "start", "motion", "count", "event")


def _check_claims(
    claims: PromptClaims, tracks: dict[str, _Track], frames: int, fps: float, view_width: float
) -> list[tuple[str, str, bool, Any]]:
    present = {c: t for c, t in tracks.items() if t.seen >= min(MIN_FRAMES_PRESENT, frames)}
    moving = frames >= 3  # an image, or two frames, shows no motion to check
    # A direction is that of the first frame: not to be seen when the prompt has the object bounce by frame 2.
    hit_early = {key for e in claims.events if e.frames and min(e.frames) <= 2 for key in e.objects}
    checks: list[tuple[str, str, bool, Any]] = []
    for obj in claims.objects:
        name = f"{obj.color} {obj.shape}"
        track = present.get(obj.color)
        checks.append(("colour", f"a {obj.color} object is in the video", track is not None, f"in {tracks[obj.color].seen if obj.color in tracks else 0} frames"))
        if track is None:
            continue
        checks.append(("shape", f"the {obj.color} object is a {obj.shape}", track.shape == obj.shape, track.shape))
        if obj.start is not None:
            checks.append(("start", f"the {name} starts {place_phrase(obj.start)}", *_check_start(obj.start, track, view_width)))
        early = obj.motion in ("moves", "thrown") and (obj.color, obj.shape) in hit_early
        if obj.motion is not None and moving and not claims.camera_moves and not early:
            ok, seen = _check_motion(obj, track)
            checks.append(("motion", f"the {name} {_motion_words(obj)}", ok, seen))
    if claims.count is not None:
        shown = {c: t.objects for c, t in sorted(present.items())}
        checks.append(("count", f"{claims.count} objects", sum(shown.values()) == claims.count, shown))
    for event in claims.events:
        # An event in the first or last two frames has no before or after to see it by.
        if not moving or (event.frames and all(f < 2 or f > frames - 2 for f in event.frames)):
            continue
        colors = [c for c, _ in event.objects]
        names = " and the ".join(f"{c} {s}" for c, s in event.objects)
        if event.kind == "bounce":
            times = _bounces(present.get(colors[0]), event.wall)
            where = f" off {WALL_WORDS[event.wall]}" if event.wall else ""
            checks.append(("event", f"the {names} bounces{where}", bool(times), times))
        else:
            times = _collisions(present.get(colors[0]), present.get(colors[1]), 1 / fps)
            checks.append(("event", f"the {names} collide", bool(times), times))
    return checks


def _check_start(place: str, track: _Track, view_width: float) -> tuple[bool, Any]:
    if track.start is None:
        return False, "not in frame 0"
    (x0, x1), (y0, y1) = place_span(place, view_width)
    x, y = track.start
    dx, dy = max(x0 - x, x - x1, 0.0), max(y0 - y, y - y1, 0.0)
    return math.hypot(dx, dy) <= START_MARGIN, f"at ({x:.1f}, {y:.1f})"


def _motion_words(obj: ObjectClaim) -> str:
    return {"still": "stays still", "falls": "falls"}.get(obj.motion or "", f"{'is thrown' if obj.motion == 'thrown' else 'moves'} {obj.direction}")


def _check_motion(obj: ObjectClaim, track: _Track) -> tuple[bool, Any]:
    if len(track.times) < 2:
        return False, "too few frames wholly in view to measure"
    if obj.motion == "falls":
        drop = float(track.positions[0, 1] - track.positions[-1, 1])
        return drop > 0.1, f"drops {drop:.2f} units"
    velocity = _initial_velocity(track)
    if velocity is None:
        return False, "too few frames before its first bounce or collision"
    speed = float(np.linalg.norm(velocity))
    if obj.motion == "still":
        return speed < STILL_SPEED, f"{speed:.2f} units/s"
    angle = math.radians(45.0 * DIRECTIONS.index(obj.direction))
    cosine = float(velocity @ np.array([math.cos(angle), math.sin(angle)])) / max(speed, 1e-9)
    off = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
    return off <= DIRECTION_TOLERANCE and speed >= STILL_SPEED / 10, f"{off:.0f} degrees off at {speed:.2f} units/s"


def _initial_velocity(track: _Track) -> np.ndarray | None:
    """Velocity at the first sighting: a quadratic fit over the frames before the first impulse (at most 5)."""
    end = 5
    if track.impulses:
        end = min(end, int(np.searchsorted(track.times, track.impulses[0][0])))
    times, positions = track.times[:end] - track.times[0], track.positions[:end]
    if len(times) < 2:
        return None
    degree = 2 if len(times) >= 4 else 1
    return np.array([np.polyfit(times, positions[:, k], degree)[-2] for k in range(2)])


def _bounces(track: _Track | None, wall: str | None) -> list[float]:
    """Times of impulses that reverse the velocity component facing ``wall`` (any component if None)."""
    if track is None:
        return []
    axis, sign = {"floor": (1, -1), "ceiling": (1, 1), "left": (0, -1), "right": (0, 1)}.get(wall or "", (None, 0))
    times = []
    for time, before, after in track.impulses:
        axes = [axis] if axis is not None else [0, 1]
        if any(before[k] * after[k] < 0 and (sign == 0 or sign * before[k] > 0) for k in axes):
            times.append(round(time, 3))
    return times


def _collisions(a: _Track | None, b: _Track | None, frame_time: float) -> list[float]:
    """Times where both tracks have an impulse (within a frame) while their objects touch."""
    if a is None or b is None:
        return []
    times = []
    for ta, _, _ in a.impulses:
        for tb, _, _ in b.impulses:
            if abs(ta - tb) <= 1.5 * frame_time and _closest_gap(a, b, ta, frame_time) <= 0.5:
                times.append(round(ta, 3))
    return sorted(set(times))


def _closest_gap(a: _Track, b: _Track, time: float, frame_time: float) -> float:
    """The smallest distance between the two objects' outlines (as discs) in the frames within one of ``time``."""
    gaps = [np.inf]
    for ia in np.flatnonzero(np.abs(a.times - time) <= 1.01 * frame_time):
        for ib in np.flatnonzero(np.abs(b.times - a.times[ia]) < 0.01 * frame_time):
            gaps.append(float(np.linalg.norm(a.positions[ia] - b.positions[ib]) - a.radii[ia] - b.radii[ib]))
    return min(gaps)
