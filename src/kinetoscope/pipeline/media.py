"""Given images and videos: read them (a path, a uint8 array or a ``Video``) and fit them to the working size."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from kinetoscope.errors import InvalidInputError
from kinetoscope.io import Video, read_image, read_video
from kinetoscope.io.frames import check_frames

Media = str | os.PathLike | np.ndarray | Video


def load_image(image: Media, name: str = "image") -> np.ndarray:
    """uint8 ``(1, H, W, 3)``: an image file, an ``(H, W, 3)`` array, or a one-frame video."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)[None]
    if isinstance(image, Video):
        image = image.frames
    if isinstance(image, np.ndarray) and image.ndim == 3:
        image = image[None]
    frames = check_frames(image, name)
    if len(frames) != 1:
        raise InvalidInputError(f"{name} has {len(frames)} frames; give one image (H, W, 3).", param=name)
    return frames


def load_video(video: Media, name: str = "video") -> tuple[np.ndarray, float | None]:
    """uint8 ``(T, H, W, 3)`` frames and their fps (None for a bare array)."""
    if isinstance(video, (str, os.PathLike)):
        loaded = read_video(video)
        return loaded.frames, loaded.fps
    if isinstance(video, Video):
        return check_frames(video.frames, name), video.fps
    return check_frames(video, name), None


def fit_frames(frames: np.ndarray, width: int, height: int, name: str, notes: list[str]) -> np.ndarray:
    """The frames at ``width`` x ``height``: cropped about the centre to that aspect ratio, then
    resized (antialiased bicubic). Frames already of that size come back unchanged."""
    h, w = frames.shape[1:3]
    if (w, h) == (width, height):
        return frames
    notes.append(f"{name} {w}x{h} fitted to {width}x{height} (centre crop to the aspect ratio, then resize)")
    crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + crop_h, left : left + crop_w]))
    x = x.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
