"""Still images through Pillow: png, jpg and webp in; png, jpg and webp out."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kinetoscope.errors import InvalidInputError, MediaError
from kinetoscope.files import atomic_write_bytes
from kinetoscope.io.frames import flatten_alpha
from kinetoscope.io.paths import require_file, suffix, unreadable

_READ_FORMATS = ["PNG", "JPEG", "WEBP"]
#: What Pillow raises for damaged pixel data.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a png, jpg or webp (first frame) as uint8 ``(H, W, 3)``: EXIF orientation applied, alpha on white."""
    path = Path(path)
    with open_image(path) as image:
        try:
            return pil_to_rgb(ImageOps.exif_transpose(image))
        except DECODE_ERRORS as e:  # a damaged file fails here, when Pillow reads the pixels
            raise unreadable(path, str(e)) from None


def write_image(path: str | os.PathLike, frame: np.ndarray, *, quality: int = 95) -> Path:
    """Write a uint8 ``(H, W, 3)`` frame as png, jpg or webp (by suffix), atomically. ``quality`` is for jpg/webp."""
    path = Path(path)
    image_format = _WRITE_FORMATS.get(suffix(path))
    if image_format is None:
        raise MediaError(f"cannot write an image to {path}: use a .png, .jpg, .jpeg or .webp suffix.", param="path")
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
        raise InvalidInputError(
            f"an image must be a uint8 numpy array of shape (H, W, 3), got {getattr(frame, 'dtype', type(frame).__name__)} "
            f"{getattr(frame, 'shape', '')}.",
            param="frame",
        )
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=image_format, quality=quality)
    atomic_write_bytes(path, buffer.getvalue())
    return path


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow (lazily: pixels are decoded on first use), turning failures into MediaError."""
    require_file(path)
    try:
        image = Image.open(path, formats=_READ_FORMATS)
    except UnidentifiedImageError:
        raise unreadable(path, "not a PNG, JPEG or WebP image") from None
    except Image.DecompressionBombError as e:
        raise MediaError(f"{path} is too large to decode safely ({e}).", param="path") from None
    except DECODE_ERRORS as e:
        raise unreadable(path, str(e)) from None
    with image:
        yield image


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return flatten_alpha(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))
