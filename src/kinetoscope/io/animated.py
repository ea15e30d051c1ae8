"""Animated GIF and WebP through Pillow (writing both, reading WebP; FFmpeg reads GIF in pyav.py).

Both formats store a display duration per frame (GIF in 1/100 s, WebP in 1/1000 s) and both
encoders merge identical consecutive frames into one longer frame; readers undo that with
:func:`~kinetoscope.io.timeline.frame_grid`, so frame counts survive a round trip. Lossy WebP
also merges frames that differ by a few levels (libwebp treats them as unchanged).

The exact fps goes into the file (GIF comment, WebP XMP) as ``kinetoscope:fps=...``; files
without it get a rate guessed from their durations.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from kinetoscope.errors import InvalidInputError, MediaError
from kinetoscope.files import atomic_write_bytes
from kinetoscope.io.frames import DEFAULT_FPS
from kinetoscope.io.image import DECODE_ERRORS, open_image, pil_to_rgb
from kinetoscope.io.paths import unreadable
from kinetoscope.io.timeline import Convert, Timeline, fps_tag, frame_grid, on_grid, parse_fps_tag, rounded_durations_ms

#: Players (and FFmpeg) show a stored duration of 0 as 1/10 s.
_ZERO_DURATION = 0.1


def write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """A 256-colour palette per frame, no dithering; loops forever.

    Palettes come from Pillow's fast octree: about 100x faster than its default median cut
    (5 ms instead of 600 ms for a 256x256 frame) for a mean error under one level more.
    """
    if fps > 100:
        raise InvalidInputError(
            f"GIF stores frame delays in 1/100 s, so fps must be <= 100 for {path}, got {fps:g}.", param="fps"
        )
    images = [
        Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for f in frames
    ]
    durations = rounded_durations_ms(len(frames), fps, 10)
    _save_animation(path, images, format="GIF", duration=durations, loop=0, comment=fps_tag(fps).encode())


def write_webp(path: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    """Lossy WebP at ``quality`` (lossless at 100); loops forever."""
    if fps > 1000:
        raise InvalidInputError(
            f"WebP stores frame durations in 1/1000 s, so fps must be <= 1000 for {path}, got {fps:g}.", param="fps"
        )
    durations = rounded_durations_ms(len(frames), fps, 1)
    _save_animation(
        path,
        [Image.fromarray(frame) for frame in frames],
        format="WEBP",
        duration=durations,
        loop=0,
        quality=quality,
        lossless=quality >= 100,
        xmp=_xmp(fps_tag(fps)),
    )


def _xmp(text: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>{text}'
        "</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def _save_animation(path: Path, images: list[Image.Image], **params) -> None:
    buffer = io.BytesIO()
    images[0].save(buffer, save_all=True, append_images=images[1:], **params)
    atomic_write_bytes(path, buffer.getvalue())


def webp_durations(path: Path) -> list[float]:
    """Frame durations (s) from the ANMF chunks of an animated WebP, without decoding; [] for a still WebP."""
    data = path.read_bytes()
    durations = []
    at = 12  # after "RIFF", size, "WEBP"
    while at + 8 <= len(data):
        fourcc, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if fourcc == b"ANMF" and size >= 16:  # payload: x, y, width-1, height-1, duration (3 bytes each), flags
            milliseconds = int.from_bytes(data[at + 20 : at + 23], "little")
            durations.append(milliseconds / 1000 if milliseconds else _ZERO_DURATION)
        at += 8 + size + (size & 1)
    return durations


def _webp_rate(path: Path, image: Image.Image) -> tuple[float, list[int]]:
    num_stored = getattr(image, "n_frames", 1)
    durations = webp_durations(path)
    if not durations:  # a still WebP: one frame
        return DEFAULT_FPS, [1] * num_stored
    if len(durations) != num_stored:
        raise MediaError(f"{path} is corrupt or truncated (its frame table does not match its frames).", param="path")
    return frame_grid(durations, 0.001, parse_fps_tag(image.info.get("xmp")))


def probe_webp(path: Path) -> dict:
    with open_image(path) as image:
        width, height = image.size
        fps, slots = _webp_rate(path, image)
    return dict(fps=fps, num_frames=sum(slots), duration=sum(slots) / fps, width=width, height=height, codec="webp")


def webp_timeline(path: Path) -> Timeline:
    """WebP frames decode in order from the first (each frame is drawn over the previous canvas)."""
    with open_image(path) as image:
        fps, slots = _webp_rate(path, image)
    return Timeline(fps, on_grid(_decode_webp(path), slots, fps))


def _decode_webp(path: Path) -> Iterator[Convert]:
    with open_image(path) as image:
        for index in range(getattr(image, "n_frames", 1)):
            try:
                image.seek(index)
                frame = pil_to_rgb(image)
            except DECODE_ERRORS as e:
                if index == 0:
                    raise unreadable(path, str(e)) from None
                warnings.warn(f"{path} is truncated or damaged after frame {index} ({e}).", stacklevel=1)
                return
            yield lambda frame=frame: frame
