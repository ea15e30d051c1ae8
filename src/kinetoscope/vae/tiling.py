"""Spatial tiling with blended overlaps, so large frames encode and decode in bounded memory.

A frame is cut into overlapping tiles; each tile goes through the network on its own and
the outputs are blended with weights that ramp linearly across each overlap, so seams fade
instead of showing. Away from tile borders (beyond the network's receptive field) the
result equals the untiled one.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of size ``tile`` covering ``length`` with at least ``overlap`` shared;
    the last tile ends exactly at ``length`` so every tile has full size."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def blend_ramp(start: int, size: int, length: int, overlap: int) -> torch.Tensor:
    """Weights of one tile along one axis: 1 inside, rising linearly over ``overlap`` on each
    side that has a neighbour (never 0, so every position has some weight)."""
    weight = torch.ones(size)
    if overlap <= 0:
        return weight
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if start > 0:
        weight[:overlap] = ramp
    if start + size < length:
        weight[size - overlap :] = ramp.flip(0)
    return weight


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    scale: Fraction,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` (B, C, T, H, W) and blend the results.

    ``fn`` maps a (B, C, T, h, w) tile to (B, C', T', h*scale, w*scale); ``tile`` and
    ``overlap`` are in units of ``x``, and ``tile*scale``, ``overlap*scale`` must be whole.
    """
    height, width = x.shape[-2:]
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)
    out_overlap = int(overlap * scale)
    out = weights = None
    for top in rows:
        for left in cols:
            piece = fn(x[..., top : top + tile, left : left + tile])
            out_top, out_left = int(top * scale), int(left * scale)
            h, w = piece.shape[-2:]
            if out is None:
                out_h, out_w = int(height * scale), int(width * scale)
                out = piece.new_zeros((*piece.shape[:-2], out_h, out_w))
                weights = piece.new_zeros((out_h, out_w))
            weight = torch.outer(
                blend_ramp(out_top, h, out.shape[-2], out_overlap), blend_ramp(out_left, w, out.shape[-1], out_overlap)
            ).to(piece)
            out[..., out_top : out_top + h, out_left : out_left + w] += piece * weight
            weights[out_top : out_top + h, out_left : out_left + w] += weight
            del piece
    return out.div_(weights)
