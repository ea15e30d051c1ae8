"""Reading, writing and probing videos: one entry point each, dispatching on the path."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from kinetoscope.errors import InvalidInputError, KinetoscopeError, MediaError
from kinetoscope.io import animated, folder, pyav
from kinetoscope.io.frames import DEFAULT_FPS, check_fps, check_frames
from kinetoscope.io.image import open_image, read_image
from kinetoscope.io.paths import FFMPEG_SUFFIXES, IMAGE_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, suffix
from kinetoscope.io.timeline import EPS, Timeline, select_frames, still_timeline

#: Default for ``write_video(quality=...)``: x264 CRF 13, WebP quality 75.
DEFAULT_QUALITY = 75


@dataclasses.dataclass
class Video:
    """Frames ``(T, H, W, 3)`` uint8 shown at ``fps`` frames per second."""

    frames: np.ndarray
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds: each frame lasts ``1 / fps``."""
        return self.num_frames / self.fps


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int
    duration: float
    width: int
    height: int
    codec: str


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, *, quality: int = DEFAULT_QUALITY) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames, atomically, in the format the path names.

    ``.mp4``: H.264 yuv420p (odd sizes padded, see :mod:`kinetoscope.io.pyav`); ``.gif``: 256
    colours per frame, fps <= 100; ``.webp``: animated WebP; no suffix or an existing folder: a
    folder of ``frame_00000.png``... plus ``video.json``. ``quality`` runs 0..100 (higher is
    better): x264 CRF ``51 * (100 - quality) / 100`` (at least 1), WebP quality (100 = lossless).
    """
    path = Path(path)
    check_frames(frames)
    fps = check_fps(fps)
    if not (isinstance(quality, (int, np.integer)) and 0 <= quality <= 100):
        raise InvalidInputError(f"quality must be an integer from 0 to 100, got {quality!r}.", param="quality")
    kind = suffix(path)
    if path.is_dir() or kind == "":
        folder.write_folder(path, frames, fps)
    elif kind not in WRITABLE_VIDEO_SUFFIXES:
        raise MediaError(
            f"cannot write a video to {path}: use .mp4, .gif, .webp or a folder path without a suffix.", param="path"
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if kind == ".mp4":
                pyav.write_mp4(path, frames, fps, int(quality))
            elif kind == ".gif":
                animated.write_gif(path, frames, fps)
            else:
                animated.write_webp(path, frames, fps, int(quality))
        except OSError as e:
            raise MediaError(f"cannot write {path}: {e.strerror or e}.", param="path") from None
    return path


def read_video(
    path: str | os.PathLike,
    *,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> Video:
    """Decode the frames shown in ``[start, end)`` seconds, optionally resampled to ``fps``.

    mp4 and other FFmpeg containers seek to the keyframe before ``start`` instead of decoding
    from the beginning, and stop at ``end``. With ``fps``, output frame ``k`` is the source frame
    in the window nearest to ``start + k / fps``. Images read as one frame; folders of frames as
    a video at the fps in their ``video.json`` (else 24). A truncated file returns the frames that
    decode, with a warning; a file in which no frame decodes raises MediaError.
    """
    path = Path(path)
    start, end, fps = _check_range(start, end, fps)
    if max_frames is not None and not (isinstance(max_frames, (int, np.integer)) and max_frames >= 1):
        raise InvalidInputError(f"max_frames must be a positive integer, got {max_frames!r}.", param="max_frames")
    timeline = _timeline(path, start)
    frames = select_frames(timeline, start=start, end=end, fps=fps, max_frames=max_frames)
    if not frames:
        raise _nothing_in_range(path, start, end)
    return Video(np.stack(frames), fps if fps is not None else timeline.fps)


def probe(path: str | os.PathLike) -> VideoInfo:
    """fps, frame count, duration, size and codec from container metadata, without decoding frames."""
    path = Path(path)
    kind = suffix(path)
    if path.is_dir():
        return VideoInfo(**folder.probe_folder(path))
    if kind == ".webp":
        return VideoInfo(**animated.probe_webp(path))
    if kind in FFMPEG_SUFFIXES:
        return VideoInfo(**pyav.probe(path))
    if kind in IMAGE_SUFFIXES:
        with open_image(path) as image:
            width, height, codec = image.width, image.height, image.format.lower()
        return VideoInfo(DEFAULT_FPS, 1, 1 / DEFAULT_FPS, width, height, codec)
    raise _unsupported(path)


def _check_range(start, end, fps) -> tuple[float, float | None, float | None]:
    start_s = 0.0 if start is None else _seconds(start, "start")
    end_s = None if end is None else _seconds(end, "end")
    if end_s is not None and end_s <= start_s:
        raise InvalidInputError(f"end ({end_s:g} s) must be after start ({start_s:g} s).", param="end")
    return start_s, end_s, None if fps is None else check_fps(fps)


def _seconds(value, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (np.isfinite(seconds) and seconds >= 0):
        raise InvalidInputError(f"{name} must be a number of seconds >= 0, got {value!r}.", param=name)
    return seconds


def _timeline(path: Path, start: float) -> Timeline:
    kind = suffix(path)
    if path.is_dir():
        return folder.folder_timeline(path)
    if kind == ".webp":
        return animated.webp_timeline(path)
    if kind in FFMPEG_SUFFIXES:
        return pyav.timeline(path, start)
    if kind in IMAGE_SUFFIXES:
        return still_timeline(read_image(path), DEFAULT_FPS)
    raise _unsupported(path)


def _unsupported(path: Path) -> MediaError:
    if not path.exists():
        return MediaError(f"{path}: no such file or folder.", param="path")
    readable = ", ".join(sorted(FFMPEG_SUFFIXES | IMAGE_SUFFIXES))
    return MediaError(f"cannot read {path}: its suffix is not one of {readable} (or a folder of frames).", param="path")


def _nothing_in_range(path: Path, start: float, end: float | None) -> KinetoscopeError:
    """No frame came back: the range is past the end or between two frames, or the file is damaged."""
    info = probe(path)
    last = (info.num_frames - 1) / info.fps
    if start > last + EPS:
        return InvalidInputError(
            f"start ({start:g} s) is after the last frame of {path} (at {last:.3f} s of {info.duration:.3f} s).",
            param="start",
        )
    if end is not None and math.ceil(start * info.fps - EPS) / info.fps >= end - EPS:
        return InvalidInputError(
            f"no frame of {path} starts between {start:g} s and {end:g} s (frames are 1/{info.fps:g} s apart).",
            param="end",
        )
    until = "the end" if end is None else f"{end:g} s"
    return MediaError(
        f"{path} is corrupt or truncated: no frame decodes between {start:g} s and {until}.", param="path"
    )
