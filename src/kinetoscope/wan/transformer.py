"""Wan2.1's transformer in diffusers' layout <-> kinetoscope's :class:`~kinetoscope.dit.DiT`.

The blocks are the same, so every tensor maps exactly, by rules that run both ways:

- kinetoscope fuses projections diffusers keeps apart (self-attention's Q, K, V; cross-attention's
  K, V): its weight is theirs concatenated, and its LoRA adapter splits into one per projection
  with the same ``A`` and a slice of ``B``;
- the patch embedding is diffusers' Conv3d flattened (kinetoscope orders a token's features as
  the Conv3d weight does: channel, then time, height, width);
- the output projection's rows are reordered: diffusers orders a token's outputs patch position
  first and channel last, kinetoscope channel first.

The one difference weights cannot express, Wan's zero-padded prompts, is ``DiTConfig.text_len``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kinetoscope.dit import DiT, DiTConfig
from kinetoscope.errors import CheckpointError, InvalidInputError, require

#: Tokens Wan2.1 pads every prompt to (its text encoder's maximum, diffusers' ``max_sequence_length``).
WAN_TEXT_LEN = 512
#: Wan's RoPE base; diffusers' ``WanRotaryPosEmbed`` fixes it.
WAN_ROPE_THETA = 10000.0
TRANSFORMER_CLASS = "WanTransformer3DModel"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"

# How a kinetoscope tensor is made of diffusers' tensors (see ``_to_dit`` and ``_to_wan``).
SAME, CAT, STACK, SQUEEZE, UNSQUEEZE, CONV, HEAD = "same", "cat", "stack", "squeeze", "unsqueeze", "conv", "head"
_BIAS_KIND = {SAME: SAME, CAT: CAT, HEAD: HEAD, CONV: SAME}


def linear_rules(depth: int) -> dict[str, tuple[tuple[str, ...], str]]:
    """kinetoscope's linear layers -> (the diffusers layers they hold, how)."""
    rules: dict[str, tuple[tuple[str, ...], str]] = {
        "patch_embed": (("patch_embedding",), CONV),
        "text_embed.0": (("condition_embedder.text_embedder.linear_1",), SAME),
        "text_embed.2": (("condition_embedder.text_embedder.linear_2",), SAME),
        "time_embed.mlp.0": (("condition_embedder.time_embedder.linear_1",), SAME),
        "time_embed.mlp.2": (("condition_embedder.time_embedder.linear_2",), SAME),
        "time_modulation.1": (("condition_embedder.time_proj",), SAME),
        "head.proj": (("proj_out",), HEAD),
    }
    for i in range(depth):
        b = f"blocks.{i}."  # the same prefix on both sides
        rules[b + "video.qkv"] = ((b + "attn1.to_q", b + "attn1.to_k", b + "attn1.to_v"), CAT)
        rules[b + "video.out"] = ((b + "attn1.to_out.0",), SAME)
        rules[b + "video.ffn.0"] = ((b + "ffn.net.0.proj",), SAME)
        rules[b + "video.ffn.2"] = ((b + "ffn.net.2",), SAME)
        rules[b + "cross.q"] = ((b + "attn2.to_q",), SAME)
        rules[b + "cross.kv"] = ((b + "attn2.to_k", b + "attn2.to_v"), CAT)
        rules[b + "cross.out"] = ((b + "attn2.to_out.0",), SAME)
    return rules


def tensor_rules(depth: int) -> dict[str, tuple[tuple[str, ...], str]]:
    """Every tensor of kinetoscope's DiT -> (the diffusers tensors it holds, how)."""
    rules = {"head.modulation": (("scale_shift_table",), SQUEEZE)}
    for name, (sources, kind) in linear_rules(depth).items():
        rules[name + ".weight"] = (tuple(s + ".weight" for s in sources), kind)
        rules[name + ".bias"] = (tuple(s + ".bias" for s in sources), _BIAS_KIND[kind])
    for i in range(depth):
        b = f"blocks.{i}."
        rules[b + "video.modulation"] = ((b + "scale_shift_table",), SQUEEZE)
        rules[b + "video.qk_norm"] = ((b + "attn1.norm_q.weight", b + "attn1.norm_k.weight"), STACK)
        rules[b + "cross.norm.weight"] = ((b + "norm2.weight",), SAME)
        rules[b + "cross.norm.bias"] = ((b + "norm2.bias",), SAME)
        rules[b + "cross.q_norm"] = ((b + "attn2.norm_q.weight",), UNSQUEEZE)
        rules[b + "cross.k_norm"] = ((b + "attn2.norm_k.weight",), UNSQUEEZE)
    return rules


def _to_dit(kind: str, parts: list[Tensor], config: DiTConfig) -> Tensor:
    if kind == CAT:
        return torch.cat(parts)
    if kind == STACK:
        return torch.stack(parts)
    (t,) = parts
    if kind == SQUEEZE:
        return t[0]
    if kind == UNSQUEEZE:
        return t[None]
    if kind == CONV:
        return t.flatten(1)
    if kind == HEAD:  # rows (patch position, channel) -> (channel, patch position)
        return t.unflatten(0, (math.prod(config.patch_size), config.in_channels)).transpose(0, 1).flatten(0, 1)
    return t


def _to_wan(kind: str, t: Tensor, n: int, config: DiTConfig) -> list[Tensor]:
    # Slices of one tensor share its storage, which safetensors refuses to save: they are copied.
    if kind == CAT:
        return [part.clone() for part in t.chunk(n)]
    if kind == STACK:
        return [part.clone() for part in t.unbind(0)]
    if kind == SQUEEZE:
        return [t[None]]
    if kind == UNSQUEEZE:
        return [t[0]]
    if kind == CONV:
        return [t.reshape(t.shape[0], config.in_channels, *config.patch_size)]
    if kind == HEAD:
        return [t.unflatten(0, (config.in_channels, math.prod(config.patch_size))).transpose(0, 1).flatten(0, 1)]
    return [t]


def dit_state_dict(wan: dict[str, Tensor], config: DiTConfig) -> dict[str, Tensor]:
    """kinetoscope's tensors from diffusers' (taken out of ``wan`` as they are used, to bound memory)."""
    rules = tensor_rules(config.depth)
    missing = sorted(s for sources, _ in rules.values() for s in sources if s not in wan)
    if missing:
        raise CheckpointError(
            f"The Wan transformer lacks {len(missing)} tensors its config needs (e.g. {missing[:3]}).", param="source"
        )
    state = {name: _to_dit(kind, [wan.pop(s) for s in sources], config) for name, (sources, kind) in rules.items()}
    if wan:
        raise CheckpointError(
            f"The Wan transformer has {len(wan)} tensors kinetoscope has no place for (e.g. {sorted(wan)[:3]}).",
            param="source",
        )
    return state


def wan_state_dict(state: Mapping[str, Tensor], config: DiTConfig) -> dict[str, Tensor]:
    """diffusers' tensors from kinetoscope's: the exact inverse of :func:`dit_state_dict`."""
    wan = {}
    for name, (targets, kind) in tensor_rules(config.depth).items():
        for target, t in zip(targets, _to_wan(kind, state[name], len(targets), config), strict=True):
            wan[target] = t.contiguous()
    return wan


# ---------------------------------------------------------------- configs
def dit_config(wan: Mapping[str, Any]) -> DiTConfig:
    """The DiTConfig of a ``WanTransformer3DModel`` config (with diffusers' defaults filled in)."""
    if wan.get("image_dim") is not None or wan.get("added_kv_proj_dim") is not None:
        raise InvalidInputError(
            "This Wan transformer is an image-to-video model (it has image_dim or added_kv_proj_dim); "
            "only text-to-video Wan2.1 models import for now.",
            param="source",
        )
    out_channels = wan.get("out_channels") or wan["in_channels"]
    unsupported = {
        "out_channels": (out_channels, wan["in_channels"]),
        "cross_attn_norm": (wan["cross_attn_norm"], True),
        "qk_norm": (wan["qk_norm"], "rms_norm_across_heads"),
        "pos_embed_seq_len": (wan.get("pos_embed_seq_len"), None),
    }
    for key, (value, wanted) in unsupported.items():
        if value != wanted:
            raise InvalidInputError(
                f"The Wan transformer's {key} is {value!r}; kinetoscope imports Wan2.1's blocks, "
                f"which have {wanted!r}.",
                param="source",
            )
    heads, head_dim = wan["num_attention_heads"], wan["attention_head_dim"]
    return DiTConfig(
        in_channels=wan["in_channels"],
        patch_size=tuple(wan["patch_size"]),
        width=heads * head_dim,
        depth=wan["num_layers"],
        heads=heads,
        ffn_dim=wan["ffn_dim"],
        text_dim=wan["text_dim"],
        text_attention="cross",
        freq_dim=wan["freq_dim"],
        rope_theta=WAN_ROPE_THETA,
        eps=wan["eps"],
        text_len=WAN_TEXT_LEN,
    )


def wan_config(config: DiTConfig) -> dict[str, Any]:
    """The ``WanTransformer3DModel`` arguments of a DiT that computes what Wan's blocks compute."""
    reasons = {
        "text_attention": (config.text_attention, "cross", "Wan's blocks use cross-attention"),
        "rope_theta": (config.rope_theta, WAN_ROPE_THETA, "diffusers fixes Wan's RoPE base"),
        "position_scale": (tuple(config.position_scale), (1.0, 1.0, 1.0), "Wan's RoPE rotates by whole positions"),
    }
    for key, (value, wanted, why) in reasons.items():
        if value != wanted:
            raise InvalidInputError(f"The model's DiTConfig.{key} is {value!r}, not {wanted!r}: {why}.", param="model")
    if not config.text_len:
        raise InvalidInputError(
            "The model's DiTConfig.text_len is 0 (it reads the prompt's tokens only), but diffusers' Wan transformer "
            "reads prompts padded with zeros, so it would compute something else; models imported from Wan have 512.",
            param="model",
        )
    return {
        "patch_size": list(config.patch_size),
        "num_attention_heads": config.heads,
        "attention_head_dim": config.head_dim,
        "in_channels": config.in_channels,
        "out_channels": config.in_channels,
        "text_dim": config.text_dim,
        "freq_dim": config.freq_dim,
        "ffn_dim": config.ffn_dim,
        "num_layers": config.depth,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": config.eps,
        "image_dim": None,
        "added_kv_proj_dim": None,
    }


# ---------------------------------------------------------------- files
def read_wan_config(transformer_dir: Path) -> Mapping[str, Any]:
    """A diffusers transformer directory's config, completed with diffusers' defaults."""
    diffusers = require("diffusers", "Importing a Wan checkpoint")
    return meta_model(diffusers.WanTransformer3DModel, transformer_dir, TRANSFORMER_CLASS).config


def meta_model(model_class: Any, directory: Path, class_name: str) -> Any:
    """diffusers' model of a saved directory built on the meta device (no memory): its ``config`` has
    every default filled in, and its module tree is the one the weights fill."""
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a diffusers model: config.json is missing.", param="source")
    found = json.loads(path.read_text()).get("_class_name", class_name)
    if found != class_name:
        raise InvalidInputError(f"{directory} holds a {found}; kinetoscope imports Wan2.1's {class_name}.", param="source")
    with torch.device("meta"):
        return model_class.from_config(model_class.load_config(directory))


def read_safetensors(directory: Path, name: str = WEIGHTS_NAME) -> dict[str, Tensor]:
    """Tensors of a diffusers model directory, one file or shards named by ``NAME.index.json``."""
    from safetensors.torch import load_file

    index = directory / f"{name}.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / name).is_file():
        files = [name]
    else:
        raise CheckpointError(f"{directory} has no {name} (nor its .index.json of shards).", param="source")
    state: dict[str, Tensor] = {}
    for file in files:
        state.update(load_file(str(directory / file)))
    return state


def load_dit(transformer_dir: str | Path) -> DiT:
    """A DiT with the weights of a diffusers ``WanTransformer3DModel`` directory, in their stored dtype."""
    transformer_dir = Path(transformer_dir)
    config = dit_config(read_wan_config(transformer_dir))
    state = dit_state_dict(read_safetensors(transformer_dir), config)
    with torch.device("meta"):  # no memory for weights that are about to be replaced
        dit = DiT(config)
    dit.load_state_dict(state, assign=True)
    # diffusers keeps a few small layers in float32 in a bf16 checkpoint; one dtype is what kinetoscope saves.
    sizes: dict[torch.dtype, int] = {}
    for t in state.values():
        sizes[t.dtype] = sizes.get(t.dtype, 0) + t.numel()
    return dit.to(max(sizes, key=sizes.get)).eval()


def save_transformer(dit: DiT, out_dir: str | Path) -> Path:
    """Write ``dit`` as a diffusers ``WanTransformer3DModel`` directory (config.json and safetensors)."""
    diffusers = require("diffusers", "Exporting to diffusers")
    arguments = wan_config(dit.config)
    with torch.device("meta"):
        model = diffusers.WanTransformer3DModel(**arguments)
    model.load_state_dict(wan_state_dict(dit.state_dict(), dit.config), assign=True)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


# ---------------------------------------------------------------- LoRA
def wan_lora_state_dict(adapters: Mapping[str, Tensor], config: DiTConfig) -> dict[str, Tensor]:
    """kinetoscope's adapters (``NAME.parametrizations.weight.0.lora_A/B``) as peft's for diffusers' layers
    (``NAME.lora_A.weight``): a fused layer's adapter becomes one per projection, sharing ``A``."""
    rules = linear_rules(config.depth)
    suffix = ".parametrizations.weight.0.lora_"
    out: dict[str, Tensor] = {}
    for key in sorted(k for k in adapters if k.endswith(suffix + "A")):
        name = key[: -len(suffix + "A")]
        if name not in rules or rules[name][1] == CONV:
            raise InvalidInputError(
                f"The LoRA adapter on {name} has no diffusers counterpart; export adapters on linear layers only.",
                param="model",
            )
        targets, kind = rules[name]
        a, b = adapters[key], adapters[name + suffix + "B"]
        for target, part in zip(targets, _to_wan(kind, b, len(targets), config), strict=True):
            out[f"{target}.lora_A.weight"] = a.clone()  # one tensor per projection, as peft keeps them
            out[f"{target}.lora_B.weight"] = part.contiguous()
    return out


def save_lora(adapters: Mapping[str, Tensor], rank: int, alpha: float, config: DiTConfig, out_dir: Path) -> Path:
    """Write adapters as diffusers' ``pytorch_lora_weights.safetensors`` (``WanPipeline.load_lora_weights``),
    with peft's config (rank and alpha) in its metadata so diffusers scales them as kinetoscope does."""
    diffusers = require("diffusers", "Exporting LoRA adapters to diffusers")
    state = wan_lora_state_dict(adapters, config)
    targets = sorted({k.rsplit(".lora_", 1)[0] for k in state})
    metadata = {"r": rank, "lora_alpha": alpha, "target_modules": targets}
    diffusers.WanPipeline.save_lora_weights(
        out_dir, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata
    )
    return out_dir / "pytorch_lora_weights.safetensors"
