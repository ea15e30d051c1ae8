"""3D rotary position embedding over integer ``(t, h, w)`` token positions.

The head width is split as in Wan2.1: height and width get ``2 * (head_dim // 6)`` channels
each, time the rest. Channel pairs ``(2i, 2i+1)`` are rotated together. A rotation is kept as a
real ``(cos, sin)`` pair rather than a complex number because inductor cannot compile complex
operators (a compiled block would fall back to eager around them). Rotations are computed
from the positions themselves rather than looked up in a table, so any size, duration or
position offset works, including ones never seen in training.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of one head given to the (t, h, w) axes."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_frequencies(
    positions: Tensor, head_dim: int, theta: float = 10000.0, scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Tensor:
    """Rotations ``(N, head_dim // 2, 2)`` (float32 ``cos, sin``) for positions ``(N, 3)``, each axis times ``scale``.

    Angles are computed in float64 on this small table only (N x head_dim/2 numbers), so
    large positions lose no precision; the rotation itself is applied in float32.
    """
    angles = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[:, axis, None].to(torch.float64) * (scale[axis] * inv_freq))
    angle = torch.cat(angles, 1)
    return torch.stack((angle.cos(), angle.sin()), -1).to(torch.float32)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate ``x`` ``(N, heads, head_dim)`` by ``freqs`` ``(N, head_dim // 2, 2)``."""
    pairs = x.float().unflatten(-1, (-1, 2))
    cos, sin = freqs[:, None, :, 0], freqs[:, None, :, 1]
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2).to(x.dtype)


def inverse_rotation(freqs: Tensor) -> Tensor:
    """The rotations that undo ``freqs``: the same angles, negated."""
    return freqs * freqs.new_tensor([1.0, -1.0])
