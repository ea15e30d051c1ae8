"""3D rotary position embedding over integer ``(t, h, w)`` token positions.

The head width is split as in Wan2.1: height and width get ``2 * (head_dim // 6)`` channels
each, time the rest. Channel pairs ``(2i, 2i+1)`` are rotated together, so a rotation is a
complex multiplication. Rotations are computed from the positions themselves rather than
looked up in a table, so any size, duration or position offset works, including ones never
seen in training.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of one head given to the (t, h, w) axes."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_frequencies(positions: Tensor, head_dim: int, theta: float = 10000.0) -> Tensor:
    """Unit complex rotations ``(N, head_dim // 2)`` (complex64) for positions ``(N, 3)``.

    Angles are computed in float64 on this small table only (N x head_dim/2 numbers), so
    large positions lose no precision; the rotation itself is applied in the model's dtype.
    """
    angles = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        inv_freq = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[:, axis, None].to(torch.float64) * inv_freq)
    return torch.polar(torch.ones(1, dtype=torch.float64, device=positions.device), torch.cat(angles, 1)).to(
        torch.complex64
    )


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate ``x`` ``(N, heads, head_dim)`` by ``freqs`` ``(N, head_dim // 2)``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs[:, None]).flatten(-2).to(x.dtype)
