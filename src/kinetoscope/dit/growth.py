"""A trained transformer made deeper, or finer-grained, keeping what it learned.

Deeper (:func:`deepen`) without changing what it computes:
Each new block is a copy of the trained block before it, with its output projections at zero
(self-attention, cross-attention and feed-forward outputs): a residual block whose outputs are
zero adds nothing, so the deeper model starts as exactly the trained one and the training spent
on it is kept. The copies' first gradients reach their outputs through features already trained.

A fresh block would not do: adaLN-Zero starts a block's own modulation offsets at zero, but the
time projection all blocks share is trained, so a fresh block's gates are not zero.

Placed (:func:`add_frame_position`): each token's place in its frame added to its embedding
through a projection that starts at zero, so the model starts as exactly the trained one.

Finer-grained (:func:`refine_patch`): a smaller patch gives each latent pixel more tokens, which a
small object needs (at 1x2x2 one 16-pixel ball is a single token). Where a latent is smooth across
a coarse patch, the fine token's embedding by the coarse weights summed over the patch is the
coarse token's; its output is the mean of the coarse outputs; positions scaled by the patch ratio
keep RoPE's angle per latent pixel. Each coarse token becomes near-copies that attend as it did, so
the refined model starts close to the trained one rather than from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kinetoscope.dit.config import DiTConfig
from kinetoscope.dit.model import DiT
from kinetoscope.errors import ConfigError


def deepen(model: DiT, depth: int) -> DiT:
    """``model`` with ``depth`` blocks: its own, in order, and copies spread evenly among them."""
    config = model.config
    if depth < config.depth:
        raise ConfigError(f"The transformer has {config.depth} blocks and cannot shrink to depth {depth}.")
    parameter = next(model.parameters())
    grown = DiT(config.replace(depth=depth)).to(device=parameter.device, dtype=parameter.dtype)
    with torch.no_grad():
        shared = {k: v for k, v in model.state_dict().items() if not k.startswith("blocks.")}
        grown.load_state_dict(shared, strict=False)
        for block, (source, is_copy) in zip(grown.blocks, block_sources(config.depth, depth)):
            _copy_block(model.blocks[source], block)
            if is_copy:
                _zero_outputs(block)
    return grown.train(model.training)


def add_frame_position(model: DiT) -> DiT:
    """``model`` with :class:`~kinetoscope.dit.model.FramePosition` added, computing what it computed."""
    parameter = next(model.parameters())
    placed = DiT(model.config.replace(frame_position=True)).to(device=parameter.device, dtype=parameter.dtype)
    missing, _ = placed.load_state_dict(model.state_dict(), strict=False)
    assert all(key.startswith("frame_embed.") for key in missing), missing
    return placed.train(model.training)


def refine_patch(model: DiT, patch_size: tuple[int, int, int]) -> DiT:
    """``model`` taking tokens of ``patch_size``, each axis a divisor of its own patch's."""
    config = model.config
    fine = refined_config(config, patch_size)
    parameter = next(model.parameters())
    refined = DiT(fine).to(device=parameter.device, dtype=parameter.dtype)
    state = model.state_dict()
    c = config.in_channels
    (rt, rh, rw), (pt, ph, pw) = _patch_ratio(config.patch_size, patch_size), fine.patch_size
    split = (c, rt, pt, rh, ph, rw, pw)  # a coarse feature (c, t, h, w) with each axis as (sub-patch, fine offset)
    embed = state["patch_embed.weight"].unflatten(1, split).sum((2, 4, 6)).flatten(1)
    head = state["head.proj.weight"].unflatten(0, split).mean((1, 3, 5)).flatten(0, 3)
    head_bias = state["head.proj.bias"].unflatten(0, split).mean((1, 3, 5)).flatten()
    state.update({"patch_embed.weight": embed, "head.proj.weight": head, "head.proj.bias": head_bias})
    refined.load_state_dict(state)
    return refined.train(model.training)


def refined_config(config: DiTConfig, patch_size: tuple[int, int, int]) -> DiTConfig:
    """``config`` with ``patch_size`` and the position scale that keeps RoPE's angle per latent pixel."""
    ratio = _patch_ratio(config.patch_size, patch_size)
    scale = tuple(s / r for s, r in zip(config.position_scale, ratio))
    return config.replace(patch_size=tuple(patch_size), position_scale=scale)


def _patch_ratio(coarse: tuple[int, int, int], fine: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(fine) != 3 or any(f < 1 or p % f for p, f in zip(coarse, fine)):
        raise ConfigError(
            f"task.model.patch_size is {tuple(fine)} but task.init_from's transformer has {tuple(coarse)}; "
            "a patch may only get finer, by a divisor of each axis."
        )
    return tuple(p // f for p, f in zip(coarse, fine))


def block_sources(depth: int, new_depth: int) -> list[tuple[int, bool]]:
    """For each block of the deeper model: the trained block it comes from, and whether it is a copy.

    The ``new_depth - depth`` copies are spread evenly, each after the block it copies
    (6 to 12: every block is followed by its copy; 6 to 8: copies of blocks 2 and 5).
    """
    added = new_depth - depth
    sources = []
    for i in range(depth):
        sources.append((i, False))
        sources += [(i, True)] * ((i + 1) * added // depth - i * added // depth)
    return sources


def _copy_block(source: nn.Module, target: nn.Module) -> None:
    """``target`` takes ``source``'s parameters. What ``source`` lacks (text outputs: the last joint
    block has none) keeps its fresh initialisation, outputs and modulation at zero."""
    have = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name in have:
            rows = have[name].shape[0]
            param[:rows].copy_(have[name])  # a stream without outputs has 2 modulation rows of 6
            param[rows:].zero_()
    for name, stream in _streams_with_outputs(target):
        if f"{name}.out.weight" not in have:
            _zero_stream_outputs(stream)


def _zero_outputs(block: nn.Module) -> None:
    for _, stream in _streams_with_outputs(block):
        _zero_stream_outputs(stream)
    if hasattr(block, "cross"):
        _zero_linear(block.cross.out)


def _streams_with_outputs(block: nn.Module) -> list[tuple[str, nn.Module]]:
    """The block's token streams (video; text in a joint block) that write back to their tokens."""
    return [(name, getattr(block, name)) for name in ("video", "text") if hasattr(getattr(block, name, None), "out")]


def _zero_stream_outputs(stream: nn.Module) -> None:
    _zero_linear(stream.out)
    _zero_linear(stream.ffn[2])


def _zero_linear(layer: nn.Linear) -> None:
    layer.weight.zero_()
    layer.bias.zero_()


def grown_config(source: DiTConfig, requested: Mapping[str, Any]) -> DiTConfig:
    """The shape a fine-tune of ``source`` trains: its own, deeper where ``requested`` asks for more
    blocks, with a finer patch where it asks for one, and with frame positions where it asks for them.

    Any other field ``requested`` names must be ``source``'s: weights cannot take another shape.
    """
    wanted = source.replace(**requested)
    if tuple(wanted.patch_size) != tuple(source.patch_size):
        wanted = refined_config(source, wanted.patch_size).replace(depth=wanted.depth)
    for key in requested:
        if key not in ("depth", "patch_size", "frame_position") and getattr(wanted, key) != getattr(source, key):
            raise ConfigError(
                f"task.model.{key} is {getattr(wanted, key)} but task.init_from's transformer has "
                f"{getattr(source, key)}; a fine-tune keeps its shape, except depth, which may grow, "
                "patch_size, which may get finer, and frame_position, which may be added."
            )
    if source.frame_position and not wanted.frame_position:
        raise ConfigError("task.init_from's transformer has frame positions; task.model.frame_position cannot remove them.")
    if wanted.depth < source.depth:
        raise ConfigError(
            f"task.model.depth is {wanted.depth} but task.init_from's transformer has {source.depth} blocks; "
            "depth may grow, not shrink."
        )
    return wanted
