"""World-simulation metrics, one function each, computed from frames with the detectors of :mod:`.detect`.

Every function returns a :class:`MetricResult`: the value, its unit, whether it passes the
threshold in :data:`THRESHOLDS`, how many samples it was computed over and what they were.
Thresholds sit a few times above each metric's floor measured on the world's own mp4 renders
(``benchmarks/bench_eval_floors.py``): a clip fails when it is clearly worse than the ground
truth parses, not when a model is merely imperfect.

Frames are uint8 ``(T, H, W, 3)``; ``state`` is a world clip's ground truth (the JSON schema
of :mod:`kinetoscope.world.truth`). Functions that take ``detections`` accept the output of
:func:`~kinetoscope.eval.detect.detect_video` so a clip is detected once for all metrics.
Prompt adherence, which reads the prompt rather than a ground truth, is in :mod:`.adherence`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from kinetoscope.errors import InvalidInputError
from kinetoscope.eval.detect import Detection, detect_video, match_objects, to_world
from kinetoscope.world import render_state
from kinetoscope.world.vocabulary import VIEW_HEIGHT

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


def scored(name: str, value: float | None, unit: str, count: int, over: str, *, higher_is_better: bool, **details: Any) -> MetricResult:
    """The result of metric ``name``, passed or failed against its threshold in :data:`THRESHOLDS`."""
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
    result = scored("velocity", float(np.mean(errors)), "units/s", len(errors), over, higher_is_better=False, missed=missed, worst=max(errors))
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
    return scored(
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
    return scored(
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
    return scored(
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
    return scored(
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
    return scored(
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
