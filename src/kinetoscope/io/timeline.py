"""Turning decoded frames with timestamps into the frames a caller asked for.

Every reader produces a *timeline*: ``(time in seconds from the first frame, convert)`` pairs in
display order, where ``convert()`` returns that frame as a uint8 ``(H, W, 3)`` array and is only
valid until the timeline advances (so frames outside the requested window are never converted).
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import NamedTuple

import numpy as np

Convert = Callable[[], np.ndarray]
#: Slack for comparing float timestamps (container time bases are exact to well under this).
EPS = 1e-6


class Timeline(NamedTuple):
    fps: float  # the source's own frame rate
    frames: Generator[tuple[float, Convert], None, None]


def select_frames(
    timeline: Timeline, *, start: float, end: float | None, fps: float | None, max_frames: int | None
) -> list[np.ndarray]:
    """Frames with time in ``[start, end)``; resampled to ``fps`` (nearest frame) when it is given."""
    frames = _in_window(timeline.frames, start, end)
    if fps is not None:
        frames = _nearest_on_grid(frames, start, end, fps, source_period=1.0 / timeline.fps)
    else:
        frames = (frame for _, frame in frames)
    try:
        return list(itertools.islice(frames, max_frames))
    finally:
        timeline.frames.close()  # release the decoder now, not when garbage collected


def _in_window(
    frames: Iterable[tuple[float, Convert]], start: float, end: float | None
) -> Iterator[tuple[float, np.ndarray]]:
    for t, convert in frames:
        if t < start - EPS:
            continue
        if end is not None and t >= end - EPS:
            return
        yield t, convert()


def _nearest_on_grid(
    frames: Iterable[tuple[float, np.ndarray]], start: float, end: float | None, fps: float, source_period: float
) -> Iterator[np.ndarray]:
    """For each grid time ``start + k / fps``, yield the frame nearest to it (a tie goes to the earlier frame)."""
    k = 0
    previous: tuple[float, np.ndarray] | None = None
    for t, frame in frames:
        while previous is None and start + k / fps <= t + EPS:
            yield frame  # grid times before the first frame take the first frame
            k += 1
        while previous is not None and (start + k / fps) - previous[0] <= t - (start + k / fps) + EPS:
            yield previous[1]
            k += 1
        previous = (t, frame)
    if previous is None:
        return
    # The last frame lasts one source period (or until `end`).
    stop = previous[0] + source_period if end is None else min(end, previous[0] + source_period)
    while start + k / fps < stop - EPS:
        yield previous[1]
        k += 1


def guess_rate(durations: list[float], tick: float) -> float:
    """The frame rate behind per-frame display durations (seconds) stored in units of ``tick``.

    For GIF/WebP files that do not carry our fps tag. Encoders merge identical consecutive
    frames into one longer frame, so the typical (median) duration is taken as one frame; a
    round rate (24, 30, 24000/1001, ...) is preferred when it puts every stored start time within
    half a tick of a frame boundary.
    """
    period = statistics.median(durations)
    slots = [max(1, round(d / period)) for d in durations]
    fps = sum(slots) / sum(durations)
    starts = np.cumsum([0.0, *durations])
    slot_starts = np.cumsum([0, *slots])
    for candidate in (round(fps), round(fps * 1.001) / 1.001):
        if candidate > 0 and np.all(np.abs(starts - slot_starts / candidate) <= tick / 2 + EPS):
            return float(candidate)
    return fps


def grid_slots(durations: list[float], fps: float) -> list[int]:
    """How many frames at ``fps`` each stored frame stands for (at least one).

    Counted from rounded start and end times rather than from each duration, so the rounding
    of durations to ticks never adds up to a frame too many or too few.
    """
    bounds = np.rint(np.cumsum([0.0, *durations]) * fps)
    return [max(1, int(n)) for n in np.diff(bounds)]


def frame_grid(durations: list[float], tick: float, tagged_fps: float | None) -> tuple[float, list[int]]:
    """``(fps, slots)`` for a variable-duration source: our tag's fps if present, else a guess."""
    fps = tagged_fps or guess_rate(durations, tick)
    return fps, grid_slots(durations, fps)


def fps_tag(fps: float) -> str:
    """The text we store in GIF comments and WebP XMP so a reader gets the exact frame rate back."""
    return f"kinetoscope:fps={fps!r}"


def parse_fps_tag(text: str | bytes | None) -> float | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = re.search(r"kinetoscope:fps=([0-9.eE+-]+)", text or "")
    try:
        fps = float(match[1]) if match else None
    except ValueError:
        return None
    return fps if fps is not None and math.isfinite(fps) and fps > 0 else None


def still_timeline(frame: np.ndarray, fps: float) -> Timeline:
    """An image as a one-frame video."""

    def frames() -> Iterator[tuple[float, Convert]]:
        yield 0.0, lambda: frame

    return Timeline(fps, frames())


def rounded_durations_ms(num_frames: int, fps: float, tick_ms: int) -> list[int]:
    """Per-frame durations in multiples of ``tick_ms`` whose running sum stays within half a tick of ``k / fps``.

    Frame ``k`` starts at ``k / fps`` rounded to the tick, so timing does not drift the way
    repeating one rounded duration would (24 fps in 1/100 s ticks: 4, 4, 5, 4, 4, 4, ...).
    """
    ticks_per_frame = 1000.0 / (fps * tick_ms)
    ends = [math.floor((k + 1) * ticks_per_frame + 0.5) * tick_ms for k in range(num_frames)]
    return [b - a for a, b in zip([0, *ends[:-1]], ends)]


def on_grid(decoded: Iterable[Convert], slots: list[int], fps: float) -> Iterator[tuple[float, Convert]]:
    """Timeline of a variable-duration source laid on its regular grid: stored frame i fills slots[i] frames."""
    k = 0
    for convert, count in zip(decoded, slots):
        for _ in range(count):
            yield k / fps, convert
            k += 1
