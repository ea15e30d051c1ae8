"""A trained transformer made deeper without changing what it computes.

Each new block is a copy of the trained block before it, with its output projections at zero
(self-attention, cross-attention and feed-forward outputs): a residual block whose outputs are
zero adds nothing, so the deeper model starts as exactly the trained one and the training spent
on it is kept. The copies' first gradients reach their outputs through features already trained.

A fresh block would not do: adaLN-Zero starts a block's own modulation offsets at zero, but the
time projection all blocks share is trained, so a fresh block's gates are not zero.
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
    """The shape a fine-tune of ``source`` trains: its own, deeper where ``requested`` asks for more blocks.

    Any other field ``requested`` names must be ``source``'s: weights cannot take another shape.
    """
    wanted = source.replace(**requested)
    for key in requested:
        if key != "depth" and getattr(wanted, key) != getattr(source, key):
            raise ConfigError(
                f"task.model.{key} is {getattr(wanted, key)} but task.init_from's transformer has "
                f"{getattr(source, key)}; a fine-tune keeps its shape, except depth, which may grow."
            )
    if wanted.depth < source.depth:
        raise ConfigError(
            f"task.model.depth is {wanted.depth} but task.init_from's transformer has {source.depth} blocks; "
            "depth may grow, not shrink."
        )
    return wanted
