"""The frame conventions at the io edge: uint8 ``(T, H, W, 3)`` arrays <-> float ``(3, T, H, W)`` tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kinetoscope.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

#: Frame rate given to sources that do not store one: still images and frame folders without video.json.
DEFAULT_FPS = 24.0


def check_frames(frames: object, name: str = "frames") -> np.ndarray:
    """Return ``frames`` if it is a uint8 ``(T, H, W, 3)`` array with T, H, W >= 1, else raise."""
    if not isinstance(frames, np.ndarray):
        raise InvalidInputError(
            f"{name} must be a numpy uint8 array of shape (T, H, W, 3), got {type(frames).__name__}.", param=name
        )
    if frames.dtype != np.uint8:
        raise InvalidInputError(f"{name} must have dtype uint8, got {frames.dtype}.", param=name)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InvalidInputError(
            f"{name} must have shape (T, H, W, 3) with T, H, W >= 1, got {tuple(frames.shape)}.", param=name
        )
    return frames


def check_fps(fps: object, name: str = "fps") -> float:
    """Return ``fps`` as a float if it is a finite number > 0, else raise."""
    try:
        value = float(fps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be a finite number of frames per second > 0, got {fps!r}.", param=name)
    return value


def frames_to_tensor(
    frames: np.ndarray, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float ``(3, T, H, W)`` in [-1, 1] (0 -> -1, 255 -> 1)."""
    import torch

    frames = check_frames(frames)
    frames = np.ascontiguousarray(frames)
    if not frames.flags.writeable:  # decoded frames can be read-only; torch only shares writable memory
        frames = frames.copy()
    x = torch.from_numpy(frames).to(device=device)
    x = x.permute(3, 0, 1, 2).to(dtype or torch.float32)
    return (x / 127.5 - 1.0).contiguous()


def tensor_to_frames(x: torch.Tensor) -> np.ndarray:
    """Float ``(3, T, H, W)`` or ``(1, 3, T, H, W)`` in [-1, 1] -> uint8 ``(T, H, W, 3)``, clamped and rounded."""
    import torch

    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InvalidInputError(
            f"expected a float torch tensor of shape (3, T, H, W) or (1, 3, T, H, W), got {_describe(x)}.", param="x"
        )
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 4 or x.shape[0] != 3 or 0 in x.shape:
        raise InvalidInputError(
            f"expected a tensor of shape (3, T, H, W) or (1, 3, T, H, W), got {tuple(x.shape)}.", param="x"
        )
    x = x.detach().float()
    # NaN would turn into arbitrary bytes; a diverged model should fail loudly instead.
    if not torch.isfinite(x).all():
        raise InvalidInputError("the video tensor contains NaN or infinite values and cannot become frames.", param="x")
    pixels = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def _describe(x: object) -> str:
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} with dtype {dtype}" if dtype is not None else type(x).__name__


def flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite ``(..., 4)`` uint8 RGBA onto white and return ``(..., 3)`` uint8 RGB."""
    if rgba[..., 3].min() == 255:  # opaque: nothing to blend
        return rgba[..., :3]
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
