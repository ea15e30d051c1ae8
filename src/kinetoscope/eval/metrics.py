"""World-simulation metrics, one function each, computed from frames with the detectors of :mod:`.detect`.

Every function returns a :class:`MetricResult`: the value, its unit, whether it passes the
threshold in :data:`THRESHOLDS`, how many samples it was computed over and what they were.
Thresholds sit a few times above each metric's floor measured on the world's own mp4 renders
(``benchmarks/bench_eval_floors.py``): a clip fails when it is clearly worse than the ground
truth parses, not when a model is merely imperfect.

Frames are uint8 ``(T, H, W, 3)``; ``state`` is a world clip's ground truth (the JSON schema
of :mod:`kinetoscope.world.truth`). Functions that take ``detections`` accept the output of
:func:`~kinetoscope.eval.detect.detect_video` so a clip is detected once for all metrics.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from kinetoscope.errors import InvalidInputError
from kinetoscope.eval.detect import Detection, detect_video, match_objects, to_world
from kinetoscope.language.claims import ObjectClaim, PromptClaims, prompt_claims
from kinetoscope.world import render_state
from kinetoscope.world.vocabulary import DIRECTIONS, VIEW_HEIGHT, WALL_WORDS

#: Pass thresholds, each a few times the metric's ground-truth floor (see the module docstring).
THRESHOLDS = {
    "velocity": 0.1,  # world units / s, at most
    "adherence": 1.0,  # share of the prompt's claims seen, at least
    "permanence": 1.0,  # share of reappearances where the object is back, at least
    "consistency": 30.0,  # dB, worst returning frame against the outbound pass, at least
    "flicker": 2.0,  # mean |change| of static pixels between frames, 0-255 scale, at most
    "conditioning": 30.0,  # dB on the given frames, at least
    "seam": 3.0,  # the wrap's step / the clip's median step (both after the best shift), at most
}
#: Object permanence: the reappeared object must be this close (world units) to where physics puts it,
PERMANENCE_TOLERANCE = 0.5
#: and its radius within this fraction of the true one.
RADIUS_TOLERANCE = 0.25
#: Adherence: an object counts as present when detected in at least this many frames.
MIN_FRAMES_PRESENT = 3
#: Adherence: a velocity change (world units / s) beyond gravity's that marks a bounce or a collision.
IMPULSE = 1.0
#: Adherence: slower than this (world units / s) is standing still.
STILL_SPEED = 0.3
#: Adherence: the measured direction may be this far (degrees) from the named one (one sector either side).
DIRECTION_TOLERANCE = 67.5
PSNR_CAP = 100.0


@dataclasses.dataclass
class MetricResult:
    """``value`` is None when the clip gives the metric nothing to measure (``over`` says why)."""

    name: str
    value: float | None
    unit: str
    passed: bool | None
    count: int
    over: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dataclasses.asdict(self))


def _result(name: str, value: float | None, unit: str, count: int, over: str, *, higher_is_better: bool, **details: Any) -> MetricResult:
    if value is None:
        return MetricResult(name, None, unit, None, count, over, details)
    limit = THRESHOLDS[name]
    passed = value >= limit if higher_is_better else value <= limit
    return MetricResult(name, float(value), unit, bool(passed), count, over, details)


# ---------------------------------------------------------------- velocity error
def velocity_error(
    frames: np.ndarray,
    state: dict[str, Any],
    *,
    given: int = 3,
    after: str | None = None,
    centroid: str = "soft",
    detections: list[list[Detection]] | None = None,
) -> MetricResult:
    """Mean ``|v - v_hat|`` in world units per second, as Kang et al. (2024) define it.

    ``v_hat`` is the finite difference of detected centroids between frames ``t`` and ``t + 1``
    (pixels to world units with the state's scale and axes); ``v`` the true velocity at the same
    instant, the interval's midpoint (the mean of the state's velocities at ``t`` and ``t + 1``).
    The mean runs over balls and intervals, skipping: intervals that start in the ``given``
    conditioning frames (the paper scores generated frames only), intervals with any object not
    wholly in view at either end, intervals holding a bounce or collision, and, with
    ``after="collision"``, intervals before the first collision. A ball missing from a frame
    where it should be is counted in ``details["missed"]`` and fails the clip. ``centroid="hard"``
    uses the plain mean of the hard mask's pixels, as the paper's parser does.
    """
    if centroid not in ("soft", "hard"):
        raise InvalidInputError(f"centroid must be 'soft' or 'hard', got {centroid!r}.", param="centroid")
    _check_video(frames, state)
    detections = detect_video(frames, _colors(state)) if detections is None else detections
    matches = match_objects(detections, state)
    fps, height = state["fps"], state["height"]
    valid = _intervals(state, given, after)
    errors, missed = [], 0
    for t in np.flatnonzero(valid):
        for i, obj in enumerate(state["objects"]):
            a, b = matches[t][i], matches[t + 1][i]
            if a is None or b is None:
                missed += 1
                continue
            cam_a, cam_b = state["camera"]["offset"][t], state["camera"]["offset"][t + 1]
            v_hat = (to_world(b.point(centroid), height=height, camera=cam_b) - to_world(a.point(centroid), height=height, camera=cam_a)) * fps
            v = (np.asarray(obj["velocity"][t]) + np.asarray(obj["velocity"][t + 1])) / 2
            errors.append(float(np.linalg.norm(v_hat - v)))
    over = f"{len(errors)} ball-intervals of {int(valid.sum())} frame intervals"
    if not errors:
        return MetricResult("velocity", None, "units/s", False if missed else None, 0, over + " (none measurable)", {"missed": missed})
    result = _result("velocity", float(np.mean(errors)), "units/s", len(errors), over, higher_is_better=False, missed=missed, worst=max(errors))
    result.passed = bool(result.passed and missed == 0)
    return result


def _intervals(state: dict[str, Any], given: int, after: str | None) -> np.ndarray:
    """Which intervals ``t -> t + 1`` the velocity error may use (see :func:`velocity_error`)."""
    frames, fps = state["frames"], state["fps"]
    visible = np.array([[v == "visible" for v in obj["visibility"]] for obj in state["objects"]]).all(axis=0)
    valid = visible[:-1] & visible[1:]
    valid[: max(given, 0)] = False
    for event in state["events"]:
        if event["type"] in ("bounce", "collision"):
            # The interval that holds it; at a frame's instant the state is already the one after it.
            t = math.ceil(event["time"] * fps - 1e-6) - 1
            if 0 <= t < frames - 1:
                valid[t] = False
    if after is not None:
        first = [e["frame"] for e in state["events"] if e["type"] == after]
        valid[: first[0] if first else frames] = False
    return valid


# ---------------------------------------------------------------- prompt adherence
def prompt_adherence(
    frames: np.ndarray, prompt: str, *, fps: float, detections: list[list[Detection]] | None = None
) -> MetricResult:
    """Share of the prompt's claims the video shows: colours, shapes, count, directions, bounces, collisions.

    Needs nothing but the frames: each named colour must be detected in at least
    ``MIN_FRAMES_PRESENT`` frames (all of them in shorter clips; images are checked for
    colours, shapes and count only), with the named shape by majority over the frames where it is
    wholly in view; the number of colours present must equal the count; a named direction must be
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
    tracks = _colour_tracks(detections, height=frames.shape[1], fps=fps)
    checks = _check_claims(claims, tracks, len(frames), fps)
    passed = sum(ok for _, _, ok, _ in checks)
    return _result(
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
    times: np.ndarray  # (K,) seconds of the frames where it is wholly in view
    positions: np.ndarray  # (K, 2)
    radii: np.ndarray  # (K,)
    shape: str  # majority over the same frames
    impulses: list[tuple[float, np.ndarray, np.ndarray]]  # (time, velocity before, velocity after)


def _colour_tracks(detections: list[list[Detection]], *, height: int, fps: float) -> dict[str, _Track]:
    seen: dict[str, list[tuple[int, Detection]]] = {}
    for t, found in enumerate(detections):
        for color in {d.color for d in found}:
            seen.setdefault(color, []).append((t, max((d for d in found if d.color == color), key=lambda d: d.area)))
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
        tracks[color] = _Track(len(items), times, positions, radii, shape, _impulses(times, positions, 1 / fps))
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
CLAIM_KINDS = ("colour", "shape", "motion", "count", "event")


def _check_claims(
    claims: PromptClaims, tracks: dict[str, _Track], frames: int, fps: float
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
        early = obj.motion in ("moves", "thrown") and (obj.color, obj.shape) in hit_early
        if obj.motion is not None and moving and not claims.camera_moves and not early:
            ok, seen = _check_motion(obj, track)
            checks.append(("motion", f"the {name} {_motion_words(obj)}", ok, seen))
    if claims.count is not None:
        checks.append(("count", f"{claims.count} objects", len(present) == claims.count, sorted(present)))
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


# ---------------------------------------------------------------- object permanence
def object_permanence(
    frames: np.ndarray, state: dict[str, Any], *, tolerance: float = PERMANENCE_TOLERANCE, detections: list[list[Detection]] | None = None
) -> MetricResult:
    """Share of reappearances (after going behind the occluder) where the same object is back where physics puts it.

    For each ``reappear`` event of the ground truth, over the (up to) three frames from it where
    the object is wholly in view, a detection of its colour must lie within ``tolerance`` world
    units of its true position in every one of them, with its median radius within
    ``RADIUS_TOLERANCE`` of the true radius and the true shape in most of them.
    """
    _check_video(frames, state)
    detections = detect_video(frames, _colors(state)) if detections is None else detections
    results = []
    for event in (e for e in state["events"] if e["type"] == "reappear"):
        (i,) = event["objects"]
        obj = state["objects"][i]
        window = [f for f in range(event["frame"], min(event["frame"] + 3, state["frames"])) if obj["visibility"][f] == "visible"]
        if window:
            results.append(_reappearance(detections, state, obj, window, tolerance))
    if not results:
        return MetricResult("permanence", None, "share of reappearances", None, 0, "no object comes out from behind the occluder")
    errors = [r["error"] for r in results if r["found"]]
    return _result(
        "permanence",
        sum(r["passed"] for r in results) / len(results),
        "share of reappearances",
        len(results),
        f"{len(results)} reappearances after occlusion",
        higher_is_better=True,
        mean_error=float(np.mean(errors)) if errors else None,
        reappearances=results,
    )


def _reappearance(detections: list[list[Detection]], state: dict[str, Any], obj: dict[str, Any], window: list[int], tolerance: float) -> dict[str, Any]:
    """Is ``obj`` back, in each frame of ``window``, where it should be, as big and shaped as it was?"""
    height = state["height"]
    check: dict[str, Any] = {"object": f"{obj['color']} {obj['shape']}", "frames": window, "found": False, "passed": False}
    errors, ratios, shapes = [], [], []
    for f in window:
        camera, truth = state["camera"]["offset"][f], np.asarray(obj["position"][f])
        same = [d for d in detections[f] if d.color == obj["color"]]
        if not same:
            return check
        distance = [float(np.linalg.norm(to_world(d.center, height=height, camera=camera) - truth)) for d in same]
        best = same[int(np.argmin(distance))]
        errors.append(min(distance))
        ratios.append(best.radius * VIEW_HEIGHT / height / obj["radius"])
        shapes.append(best.shape)
    shape = max(set(shapes), key=shapes.count)
    check.update(found=True, error=max(errors), radius_ratio=float(np.median(ratios)), shape=shape)
    check["passed"] = bool(max(errors) <= tolerance and abs(check["radius_ratio"] - 1) <= RADIUS_TOLERANCE and shape == obj["shape"])
    return check


# ---------------------------------------------------------------- scene consistency under a pan
def scene_consistency(frames: np.ndarray, *, max_shift: float = 0.5) -> MetricResult:
    """PSNR of each frame of the clip's second half against its best match in the first half.

    A camera that pans out and comes back sees the same part of the scene twice; for each
    returning frame the best match is searched over every outbound frame and every horizontal
    shift that keeps at least ``1 - max_shift`` of the width overlapping, and scored on the
    overlap. The value is the worst returning frame (``details`` has the mean). Needs no ground
    truth: it measures whether the scene stayed the same, not whether the camera moved as told.
    """
    _check_frames(frames)
    count = len(frames) // 2
    if count < 1:
        return MetricResult("consistency", None, "dB", None, 0, "a clip too short to come back")
    outbound, back = frames[:count], frames[len(frames) - count :]
    best = _psnr_from_mse(_aligned_mse(back, outbound, int(max_shift * frames.shape[2])).min(axis=1))
    return _result(
        "consistency",
        float(best.min()),
        "dB",
        count,
        f"{count} returning frames against {count} outbound frames",
        higher_is_better=True,
        mean=float(best.mean()),
        per_frame=[round(float(v), 2) for v in best],
    )


def _aligned_mse(queries: np.ndarray, references: np.ndarray, max_shift: int) -> np.ndarray:
    """``(Q, R)``: the mean squared error of each query frame against each reference frame at the
    horizontal shift (up to ``max_shift`` columns) that fits them best, over their overlap.

    Squared errors for every pair and shift come from FFT cross-correlation along the width:
    ``sum (a - b)^2 = sum a^2 + sum b^2 - 2 sum a b`` over the overlapping columns.
    """
    width = queries.shape[2]
    size = 2 * width
    # Rows and channels are summed over: (N, W, H * 3) so the FFT runs along the width.
    q = queries.astype(np.float64).transpose(0, 2, 1, 3).reshape(len(queries), width, -1)
    r = references.astype(np.float64).transpose(0, 2, 1, 3).reshape(len(references), width, -1)
    cross = np.fft.irfft(
        np.einsum("qfc,rfc->qrf", np.fft.rfft(q, size, axis=1), np.conj(np.fft.rfft(r, size, axis=1))), size, axis=2
    )  # cross[q, r, s] = sum_x q[x] r[x - s]  (s taken modulo size)
    q_energy = np.cumsum((q**2).sum(axis=2), axis=1)  # (Q, W): energy of columns [0, x]
    r_energy = np.cumsum((r**2).sum(axis=2), axis=1)
    best = np.full((len(queries), len(references)), np.inf)
    for shift in range(-max_shift, max_shift + 1):
        overlap = width - abs(shift)
        # Query column x matches reference column x - shift: sum the energy of the overlapping columns.
        if shift >= 0:
            q_cols = q_energy[:, -1] - (q_energy[:, shift - 1] if shift > 0 else 0.0)
            r_cols = r_energy[:, overlap - 1]
        else:
            q_cols = q_energy[:, overlap - 1]
            r_cols = r_energy[:, -1] - r_energy[:, -shift - 1]
        sse = q_cols[:, None] + r_cols[None, :] - 2 * cross[:, :, shift % size]
        best = np.minimum(best, np.maximum(sse, 0.0) / (overlap * q.shape[2]))
    return best


# ---------------------------------------------------------------- temporal flicker
def temporal_flicker(frames: np.ndarray, state: dict[str, Any], *, margin: int = 3) -> MetricResult:
    """Mean absolute change (0-255) between consecutive frames over the pixels that should not change.

    Static pixels are those the ground-truth render never changes, shrunk by ``margin`` pixels
    so edges of moving things and compression ringing around them stay out. The value is the
    worst consecutive pair; ``details`` has the mean. Clips with a moving camera have no static
    region and give no value.
    """
    _check_video(frames, state)
    truth = render_state(state).astype(np.int16)
    static = (truth.max(axis=0) - truth.min(axis=0)).max(axis=-1) <= 1
    static = ndimage.binary_erosion(static, iterations=margin, border_value=1)  # the frame edge is no moving thing
    share = float(static.mean())
    if share < 0.05 or len(frames) < 2:
        return MetricResult("flicker", None, "0-255", None, 0, f"{share:.0%} of the frame is static")
    change = np.abs(np.diff(frames.astype(np.float32), axis=0))[:, static].mean(axis=(1, 2))
    return _result(
        "flicker",
        float(change.max()),
        "0-255",
        len(change),
        f"{len(change)} frame pairs over {share:.0%} of the frame (static in the ground truth)",
        higher_is_better=False,
        mean=float(change.mean()),
    )


# ---------------------------------------------------------------- conditioning fidelity and loops
def conditioning_fidelity(frames: np.ndarray, given: np.ndarray) -> MetricResult:
    """PSNR of the output's first frames against the frames it was given (worst of them; mean in details)."""
    _check_frames(frames)
    if len(given) == 0:
        return MetricResult("conditioning", None, "dB", None, 0, "no frames were given")
    if len(given) > len(frames) or given.shape[1:] != frames.shape[1:]:
        raise InvalidInputError(f"The given frames {tuple(given.shape)} do not fit in the video {tuple(frames.shape)}.")
    mse = ((frames[: len(given)].astype(np.float64) - given.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    psnr = _psnr_from_mse(mse)
    return _result(
        "conditioning",
        float(psnr.min()),
        "dB",
        len(given),
        f"the {len(given)} given frames",
        higher_is_better=True,
        per_frame=[round(float(v), 2) for v in psnr],
    )


def loop_seam(frames: np.ndarray, *, max_shift: float = 0.25) -> MetricResult:
    """How abrupt the wrap from the last frame back to the first is, against the clip's own steps.

    Each step is measured as the RMS difference of two frames at the horizontal shift (up to
    ``max_shift`` of the width) that fits them best, so a panning camera's steps are small and a
    jump to another view is not. Value: the wrap's step over the median step (at least 1 of 255,
    so still clips do not divide by nothing). A seamless loop is about 1 or below.
    """
    _check_frames(frames)
    if len(frames) < 3:
        return MetricResult("seam", None, "ratio", None, 0, "fewer than 3 frames")
    shift = int(max_shift * frames.shape[2])
    steps = np.sqrt([_aligned_mse(frames[t + 1 : t + 2], frames[t : t + 1], shift)[0, 0] for t in range(len(frames) - 1)])
    seam = float(np.sqrt(_aligned_mse(frames[:1], frames[-1:], shift)[0, 0]))
    typical = max(float(np.median(steps)), 1.0)
    return _result(
        "seam", seam / typical, "ratio", len(frames), f"the wrap from frame {len(frames) - 1} to frame 0 against {len(steps)} steps",
        higher_is_better=False, seam=seam, median_step=float(np.median(steps)),
    )


# ---------------------------------------------------------------- helpers
def _psnr_from_mse(mse: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / np.maximum(mse, 0.0)), PSNR_CAP)


def _colors(state: dict[str, Any]) -> list[str]:
    return sorted({obj["color"] for obj in state["objects"]})


def _check_frames(frames: np.ndarray) -> None:
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
        raise InvalidInputError(f"Frames must be a uint8 array of shape (T, H, W, 3), got {getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}.")


def _check_video(frames: np.ndarray, state: dict[str, Any]) -> None:
    _check_frames(frames)
    wanted = (state["frames"], state["height"], state["width"], 3)
    if frames.shape != wanted:
        raise InvalidInputError(f"The video has shape {tuple(frames.shape)} but its ground truth describes {wanted} (frames, height, width, 3).")


def json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, floats rounded to 6 decimals, non-finite floats as null."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
