"""Which files are videos or images (by suffix), and the checks every reader makes first."""

from __future__ import annotations

import os
from pathlib import Path

from kinetoscope.errors import MediaError

#: Containers PyAV (FFmpeg) reads; mp4 is also what we write.
FFMPEG_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
#: ``.webp`` is both: a still image or an animated one.
VIDEO_SUFFIXES = FFMPEG_SUFFIXES | {".webp"}
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
WRITABLE_VIDEO_SUFFIXES = (".mp4", ".gif", ".webp")

# Leading bytes of the formats we read, to tell "damaged video" from "not a video at all".
_SIGNATURES = (
    (4, b"ftyp"),  # mp4 / mov / m4v
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"GIF8"),
    (0, b"RIFF"),  # webp, avi
    (0, b"\x1a\x45\xdf\xa3"),  # mkv, webm
    (0, b"\x89PNG"),
    (0, b"\xff\xd8\xff"),  # jpeg
)


def suffix(path: str | os.PathLike) -> str:
    return Path(path).suffix.lower()


def is_video_path(path: str | os.PathLike) -> bool:
    """True for suffixes :func:`~kinetoscope.io.read_video` reads as video (``.webp`` counts as both)."""
    return suffix(path) in VIDEO_SUFFIXES


def is_image_path(path: str | os.PathLike) -> bool:
    """True for ``.png``, ``.jpg``, ``.jpeg`` and ``.webp``."""
    return suffix(path) in IMAGE_SUFFIXES


def require_file(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it is a non-empty regular file; otherwise raise MediaError."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file.", param="path")
    if not path.is_file():
        raise MediaError(f"{path} is not a regular file.", param="path")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty (0 bytes).", param="path")
    return path


def unreadable(path: Path, detail: str) -> MediaError:
    """The error for a file a decoder rejected: damaged if it starts like media, else not media at all."""
    with open(path, "rb") as f:
        head = f.read(16)
    if any(head[at : at + len(magic)] == magic for at, magic in _SIGNATURES):
        return MediaError(f"{path} is corrupt or truncated ({detail}).", param="path")
    return MediaError(f"{path} is not a video or image file that kinetoscope can read ({detail}).", param="path")
