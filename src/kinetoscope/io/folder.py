"""A video as a folder of numbered frames (``frame_00000.png``, ...) plus ``video.json`` holding its fps."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from kinetoscope.errors import MediaError
from kinetoscope.files import atomic_directory
from kinetoscope.io.frames import DEFAULT_FPS
from kinetoscope.io.image import open_image, read_image
from kinetoscope.io.paths import IMAGE_SUFFIXES
from kinetoscope.io.timeline import Convert, Timeline

FRAME_NAME = "frame_{:05d}.png"
INFO_NAME = "video.json"
_OURS = re.compile(r"frame_\d+\.png|video\.json")


def write_folder(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write every frame as png into ``path``, replacing it in one rename (only if it holds nothing but frames)."""
    if path.exists():
        if not path.is_dir():
            raise MediaError(f"cannot write frames to {path}: it exists and is not a folder.", param="path")
        foreign = [p.name for p in path.iterdir() if not _OURS.fullmatch(p.name)]
        if foreign:
            raise MediaError(
                f"refusing to replace folder {path}: it holds files other than frames (e.g. {foreign[0]}).",
                param="path",
            )
    with atomic_directory(path) as tmp:
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / FRAME_NAME.format(index))
        (tmp / INFO_NAME).write_text(json.dumps({"fps": fps}) + "\n")


def frame_files(path: Path) -> list[Path]:
    """Image files in ``path`` in natural order (frame_2 before frame_10)."""
    if not path.is_dir():
        raise MediaError(f"{path}: no such folder.", param="path")
    files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        raise MediaError(f"{path} holds no frames (png, jpg or webp files).", param="path")
    return sorted(files, key=lambda p: [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", p.name)])


def folder_fps(path: Path) -> float:
    info = path / INFO_NAME
    if not info.exists():
        return DEFAULT_FPS
    try:
        fps = float(json.loads(info.read_text())["fps"])
    except (ValueError, KeyError, TypeError) as e:
        raise MediaError(f'{info} is not valid: it must be JSON like {{"fps": 24}} ({e}).', param="path") from None
    if not fps > 0:
        raise MediaError(f"{info} gives fps {fps}; it must be > 0.", param="path")
    return fps


def probe_folder(path: Path) -> dict:
    files = frame_files(path)
    with open_image(files[0]) as first:
        width, height = first.size
    fps = folder_fps(path)
    return dict(
        fps=fps,
        num_frames=len(files),
        duration=len(files) / fps,
        width=width,
        height=height,
        codec=files[0].suffix[1:].lower(),
    )


def folder_timeline(path: Path) -> Timeline:
    fps = folder_fps(path)
    return Timeline(fps, _frames(frame_files(path), fps))


def _frames(files: list[Path], fps: float) -> Iterator[tuple[float, Convert]]:
    shape = None
    for index, file in enumerate(files):

        def convert(file: Path = file) -> np.ndarray:
            nonlocal shape
            frame = read_image(file)
            if shape is not None and frame.shape != shape:
                raise MediaError(
                    f"{file} is {frame.shape[1]}x{frame.shape[0]} but earlier frames are {shape[1]}x{shape[0]}.",
                    param="path",
                )
            shape = frame.shape
            return frame

        yield index / fps, convert
