"""Spacetime patches: latents of any size become tokens, and a batch becomes one sequence.

A latent ``(C, T, H, W)`` is cut into patches of ``(pt, ph, pw)``; each patch is one token of
``C * pt * ph * pw`` features (ordered channel, then time, height, width, as a Conv3d weight is).
Samples of different durations, sizes and aspect ratios are packed NaViT-style into one
sequence without padding: :class:`PackedBatch` keeps how many tokens each sample has and every
token's integer ``(t, h, w)`` position, which is all attention and RoPE need.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from kinetoscope.errors import InvalidInputError

Grid = tuple[int, int, int]


def patchify(latent: Tensor, patch_size: Sequence[int]) -> tuple[Tensor, Grid]:
    """``(C, T, H, W)`` -> tokens ``(t*h*w, C*pt*ph*pw)`` in (t, h, w) order, and the grid ``(t, h, w)``."""
    if latent.ndim != 4:
        raise InvalidInputError(f"A latent must have 4 dimensions (C, T, H, W), got shape {tuple(latent.shape)}.")
    c, frames, height, width = latent.shape
    pt, ph, pw = patch_size
    if frames % pt or height % ph or width % pw:
        raise InvalidInputError(
            f"Latent size {frames}x{height}x{width} (frames x height x width) must be divisible by the patch size "
            f"{pt}x{ph}x{pw}."
        )
    t, h, w = frames // pt, height // ph, width // pw
    tokens = latent.reshape(c, t, pt, h, ph, w, pw).permute(1, 3, 5, 0, 2, 4, 6)
    return tokens.reshape(t * h * w, c * pt * ph * pw), (t, h, w)


def unpatchify(tokens: Tensor, grid: Grid, channels: int, patch_size: Sequence[int]) -> Tensor:
    """Exact inverse of :func:`patchify`."""
    t, h, w = grid
    pt, ph, pw = patch_size
    latent = tokens.reshape(t, h, w, channels, pt, ph, pw).permute(3, 0, 4, 1, 5, 2, 6)
    return latent.reshape(channels, t * pt, h * ph, w * pw)


def grid_positions(grid: Grid, device: torch.device | str | None = None) -> Tensor:
    """Integer ``(t, h, w)`` position of every token of one grid, ``(t*h*w, 3)``, in patchify order."""
    axes = [torch.arange(n, device=device) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """Several samples' tokens in one sequence, with what it takes to tell them apart.

    ``tokens`` ``(N, C*pt*ph*pw)``; ``positions`` ``(N, 3)`` int64 ``(t, h, w)``; ``grids`` the token
    grid of each sample, whose products are ``seq_lens``. Generation code may shift
    ``positions`` (e.g. to place an extension after a clip); ``unpack`` only needs the grids.
    """

    tokens: Tensor
    positions: Tensor
    grids: tuple[Grid, ...]
    channels: int
    patch_size: Grid

    @property
    def seq_lens(self) -> tuple[int, ...]:
        return tuple(math.prod(g) for g in self.grids)

    @property
    def cu_seqlens(self) -> Tensor:
        """Cumulative lengths ``[0, n0, n0+n1, ...]`` (int32), as flash-attn's varlen API takes them."""
        lens = torch.tensor((0,) + self.seq_lens, dtype=torch.int32, device=self.tokens.device)
        return lens.cumsum(0, dtype=torch.int32)

    @property
    def sample_index(self) -> Tensor:
        """Which sample each token belongs to, ``(N,)`` int64."""
        lens = torch.tensor(self.seq_lens, device=self.tokens.device)
        return torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)

    def with_tokens(self, tokens: Tensor) -> PackedBatch:
        """The same packing holding other per-token values (noisy latents, velocities, ...)."""
        if tokens.shape[0] != self.tokens.shape[0]:
            raise InvalidInputError(f"Expected {self.tokens.shape[0]} tokens for this packing, got {tokens.shape[0]}.")
        return dataclasses.replace(self, tokens=tokens)

    def per_sample(self, values: Tensor) -> Tensor:
        """Spread one value per sample ``(B, ...)`` over that sample's tokens ``(N, ...)``."""
        lens = torch.tensor(self.seq_lens, device=values.device)
        return torch.repeat_interleave(values, lens, dim=0)

    def frames_to_tokens(self, frame_masks: Sequence[Tensor]) -> Tensor:
        """Per-latent-frame bool masks (one ``(T,)`` per sample) -> per-token ``(N,)``.

        A token covers ``pt`` latent frames and is marked only if all of them are.
        """
        pt = self.patch_size[0]
        out = []
        for mask, (t, h, w) in zip(frame_masks, self.grids, strict=True):
            if mask.shape != (t * pt,):
                raise InvalidInputError(f"A frame mask for {t * pt} latent frames has shape {tuple(mask.shape)}.")
            per_patch = mask.to(torch.bool).reshape(t, pt).all(dim=1)
            out.append(per_patch.repeat_interleave(h * w))
        return torch.cat(out).to(self.tokens.device)

    def cells_to_tokens(self, cell_masks: Sequence[Tensor]) -> Tensor:
        """Per-latent-cell bool masks (one ``(T, H, W)`` per sample) -> per-token ``(N,)``: a token is
        marked if any cell of its patch is."""
        pt, ph, pw = self.patch_size
        out = []
        for mask, (t, h, w) in zip(cell_masks, self.grids, strict=True):
            if mask.shape != (t * pt, h * ph, w * pw):
                raise InvalidInputError(
                    f"A cell mask for a {t * pt}x{h * ph}x{w * pw} latent has shape {tuple(mask.shape)}."
                )
            per_patch = mask.to(torch.bool).reshape(t, pt, h, ph, w, pw).any(dim=5).any(dim=3).any(dim=1)
            out.append(per_patch.reshape(-1))
        return torch.cat(out).to(self.tokens.device)

    def unpack(self, tokens: Tensor | None = None) -> list[Tensor]:
        """Split ``tokens`` (default: this batch's own) back into one ``(C, T, H, W)`` latent per sample."""
        tokens = self.tokens if tokens is None else tokens
        if tokens.shape[0] != sum(self.seq_lens):
            raise InvalidInputError(f"Expected {sum(self.seq_lens)} tokens for this packing, got {tokens.shape[0]}.")
        pieces = tokens.split(self.seq_lens)
        return [unpatchify(p, g, self.channels, self.patch_size) for p, g in zip(pieces, self.grids)]


def pack(latents: Sequence[Tensor] | Tensor, patch_size: Sequence[int]) -> PackedBatch:
    """Patchify each ``(C, T, H, W)`` latent (sizes may differ) and concatenate into one :class:`PackedBatch`.

    A ``(B, C, T, H, W)`` tensor is taken as ``B`` samples of the same size.
    """
    latents = list(latents)
    if not latents:
        raise InvalidInputError("Cannot pack an empty list of latents; give at least one (C, T, H, W) tensor.")
    if len(patch_size) != 3:
        raise InvalidInputError(f"A patch size has 3 entries (pt, ph, pw), got {patch_size!r}.")
    patch: Grid = (int(patch_size[0]), int(patch_size[1]), int(patch_size[2]))
    for latent in latents:
        if latent.ndim != 4:
            raise InvalidInputError(f"A latent must have 4 dimensions (C, T, H, W), got shape {tuple(latent.shape)}.")
    channels = latents[0].shape[0]
    tokens, positions, grids = [], [], []
    for latent in latents:
        if latent.shape[0] != channels:
            raise InvalidInputError(f"All latents must have {channels} channels, got one with {latent.shape[0]}.")
        piece, grid = patchify(latent, patch)
        tokens.append(piece)
        positions.append(grid_positions(grid, latent.device))
        grids.append(grid)
    return PackedBatch(torch.cat(tokens), torch.cat(positions), tuple(grids), channels, patch)
