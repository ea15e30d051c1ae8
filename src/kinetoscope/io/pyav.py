"""Everything that goes through PyAV (FFmpeg): writing H.264 mp4, and reading mp4/mov/mkv/webm/avi/gif.

Odd sizes: yuv420p stores colour at half resolution, so H.264 needs even width and height. We
pad the right/bottom edge by repeating the last column/row, record the true size in the
container's ``comment`` tag (``kinetoscope:size=WxH``) and crop it back on reading. Other
players show the padded (one pixel larger) picture.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from kinetoscope.errors import MediaError
from kinetoscope.files import ordinary_file
from kinetoscope.io.frames import flatten_alpha
from kinetoscope.io.paths import require_file, suffix, unreadable
from kinetoscope.io.timeline import Convert, Timeline, frame_grid, on_grid, parse_fps_tag

_SIZE_TAG = re.compile(r"kinetoscope:size=(\d+)x(\d+)")
#: FFmpeg's gif demuxer replaces delays below ``min_delay`` (default 2/100 s) by 1/10 s, as
#: browsers do; we keep 1/100 s delays so a 60 fps GIF we wrote reads back at 60 fps.
_GIF_OPTIONS = {"min_delay": "1"}
GIF_TICK = 0.01


# ---------------------------------------------------------------- writing
def quality_to_crf(quality: int) -> int:
    """quality 0..100 (higher is better) -> x264 CRF 51..1 (CRF 0 would switch to a lossless profile few players decode)."""
    return max(1, round(51 * (100 - quality) / 100))


def write_mp4(path: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    """Encode ``frames`` (T, H, W, 3) as H.264 yuv420p with the index at the front (plays while downloading)."""
    height, width = frames.shape[1:3]
    even = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    with (
        _temporary_sibling(path) as tmp,
        av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        if even.shape != frames.shape:
            out.metadata["comment"] = f"kinetoscope:size={width}x{height}"
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(100_000))
        stream.width, stream.height = even.shape[2], even.shape[1]
        stream.pix_fmt = "yuv420p"
        # A keyframe every second bounds what a time-range read must decode before its start.
        stream.codec_context.gop_size = max(1, round(fps))
        stream.options = {"crf": str(quality_to_crf(quality))}
        to_yuv = VideoReformatter()  # one converter for all frames: a fresh one per frame costs ~1 ms
        for index, rgb in enumerate(even):
            frame = to_yuv.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@contextlib.contextmanager
def _temporary_sibling(path: Path) -> Iterator[Path]:
    """A temporary file next to ``path`` that replaces it on success and disappears on failure."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    ordinary_file(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- reading
@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    require_file(path)
    try:
        container = av.open(str(path), options=_GIF_OPTIONS if suffix(path) == ".gif" else {})
    except av.FFmpegError as e:
        raise unreadable(path, _reason(e)) from None
    with container:
        if not container.streams.video:
            if container.streams.audio:
                raise MediaError(f"{path} has no video stream, only audio.", param="path")
            raise unreadable(path, "no video stream found")  # e.g. an mp4 index cut short
        yield container, container.streams.video[0]


def _reason(error: av.FFmpegError) -> str:
    return (error.strerror or str(error)).rstrip(".").lower()


def _stored_size(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """(width, height) of the picture before any even-size padding we added when writing."""
    width, height = stream.codec_context.width, stream.codec_context.height
    match = _SIZE_TAG.fullmatch(container.metadata.get("comment", ""))
    if match:
        w, h = int(match[1]), int(match[2])
        if (w + w % 2, h + h % 2) == (width, height):
            return w, h
    return width, height


def _stream_fps(path: Path, stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise MediaError(f"{path} does not state a frame rate.", param="path")
    return float(rate)


def _packet_durations(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> list[float]:
    """Per-frame durations (seconds) from the packets alone, without decoding."""
    return [float(p.duration * p.time_base) for p in container.demux(stream) if p.size]


def probe(path: Path) -> dict:
    """fps, num_frames, duration, width, height, codec from container metadata (plus a demux pass if needed)."""
    with _open(path) as (container, stream):
        width, height = _stored_size(container, stream)
        codec = stream.codec_context.name
        try:
            if suffix(path) == ".gif":
                durations = _packet_durations(container, stream)
                if not durations:
                    raise MediaError(f"{path} contains no frames.", param="path")
                fps, slots = frame_grid(durations, GIF_TICK, parse_fps_tag(container.metadata.get("comment")))
                num_frames = sum(slots)
                duration = num_frames / fps
            else:
                fps = _stream_fps(path, stream)
                num_frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
                duration = float(stream.duration * stream.time_base) if stream.duration else num_frames / fps
        except av.FFmpegError as e:
            raise unreadable(path, _reason(e)) from None
    if num_frames == 0:
        raise MediaError(f"{path} contains no frames.", param="path")
    return dict(fps=fps, num_frames=num_frames, duration=duration, width=width, height=height, codec=codec)


def timeline(path: Path, start: float) -> Timeline:
    """Decode from the keyframe at or before ``start`` (seeking, not decoding what comes earlier)."""
    if suffix(path) == ".gif":
        with _open(path) as (container, stream):
            durations = _packet_durations(container, stream)
            tagged_fps = parse_fps_tag(container.metadata.get("comment"))
        if not durations:
            raise MediaError(f"{path} contains no frames.", param="path")
        fps, slots = frame_grid(durations, GIF_TICK, tagged_fps)
        return Timeline(fps, on_grid((convert for _, convert in _decode(path, 0.0)), slots, fps))
    with _open(path) as (_, stream):
        fps = _stream_fps(path, stream)
    return Timeline(fps, _decode(path, start))


def _decode(path: Path, start: float) -> Iterator[tuple[float, Convert]]:
    with _open(path) as (container, stream):
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        origin = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        crop = _stored_size(container, stream)
        to_rgb = VideoReformatter()  # one converter for all frames: a fresh one per frame costs ~1 ms
        decoded, last = 0, None
        try:
            if start > 0:
                container.seek(int((start + origin) / time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                decoded, last = decoded + 1, float(frame.time) - origin
                yield last, lambda frame=frame: _to_rgb(to_rgb, frame, crop)
        except av.FFmpegError as e:
            if decoded == 0:
                raise unreadable(path, _reason(e)) from None
            _warn_truncated(path, last, _reason(e))
            return
        # Reaching the end of the data before the end the index promised also means truncation.
        if last is not None and stream.duration and stream.average_rate:
            promised = float(stream.duration * time_base)
            if last + 1.5 / float(stream.average_rate) < promised:
                _warn_truncated(path, last, f"it promises {promised:.3f} s")


def _warn_truncated(path: Path, last: float | None, reason: str) -> None:
    """A truncated file keeps what decoded (see read_video's docstring); say where it stopped."""
    warnings.warn(f"{path} is truncated or damaged: frames stop at {last or 0:.3f} s ({reason}).", stacklevel=1)


def _to_rgb(reformatter: VideoReformatter, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if frame.format.name == "bgra":  # FFmpeg's GIF decoder; reordering in numpy beats swscale here
        return flatten_alpha(frame.to_ndarray()[..., [2, 1, 0, 3]])[:height, :width]
    if frame.format.name in ("rgba", "argb", "abgr", "pal8", "yuva420p"):  # may be transparent
        return flatten_alpha(reformatter.reformat(frame, format="rgba").to_ndarray())[:height, :width]
    return reformatter.reformat(frame, format="rgb24").to_ndarray()[:height, :width]
