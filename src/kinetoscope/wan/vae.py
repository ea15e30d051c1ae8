"""Wan2.1's VAE (diffusers' ``AutoencoderKLWan``) -> kinetoscope's :class:`~kinetoscope.vae.CausalVAE`.

kinetoscope's VAE was built after Wan's: the same levels, residual blocks, per-frame attention
and causal convolutions, so every weight maps by name and reshape alone (Conv2d kernels become
one-frame Conv3d kernels, norm gains lose their broadcast dimensions). What weights cannot
express is switched on in the config: ``norm_eps``, ``quant_conv`` and ``resample="wan"``.
diffusers builds the Wan model on the meta device, so its module tree, not a copy of its
construction loops, says which layer pairs with which.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from kinetoscope.errors import CheckpointError, InvalidInputError, require
from kinetoscope.vae import CausalVAE, VAEConfig
from kinetoscope.wan.transformer import meta_model, read_safetensors

VAE_CLASS = "AutoencoderKLWan"
#: Wan's RMS norm is ``F.normalize``: its epsilon (1e-12 on the norm) never matters in practice.
WAN_NORM_EPS = 1e-12

# Renames inside each kind of layer (kinetoscope's name -> diffusers'); the rest keep their names.
_RESIDUAL = {"norm1.weight": "norm1.gamma", "norm2.weight": "norm2.gamma", "shortcut.": "conv_shortcut."}
_ATTENTION = {"norm.weight": "norm.gamma", "qkv.": "to_qkv."}
_DOWN = {"spatial.": "resample.1.", "temporal.": "time_conv."}
_UP = {"conv.": "resample.1."}


def vae_config(wan: Mapping[str, Any]) -> VAEConfig:
    """The VAEConfig of an ``AutoencoderKLWan`` config (with diffusers' defaults filled in)."""
    mult = list(wan["dim_mult"])
    wanted = {
        "is_residual": (wan["is_residual"], False),
        "patch_size": (wan["patch_size"], None),
        "attn_scales": (list(wan["attn_scales"]), []),
        "decoder_base_dim": (wan["decoder_base_dim"] or wan["base_dim"], wan["base_dim"]),
        "out_channels": (wan["out_channels"], wan["in_channels"]),
        "dim_mult[0]": (mult[0], 1),
    }
    for key, (value, expected) in wanted.items():
        if value != expected:
            raise InvalidInputError(
                f"The Wan VAE's {key} is {value!r}; kinetoscope imports Wan2.1's VAE, which has {expected!r}.",
                param="source",
            )
    temporal = [bool(t) for t in wan["temperal_downsample"]][: len(mult) - 1]
    config = VAEConfig(
        in_channels=wan["in_channels"],
        base_channels=wan["base_dim"],
        channel_multipliers=tuple(mult),
        num_res_blocks=wan["num_res_blocks"],
        latent_channels=wan["z_dim"],
        spatial_compression=2 ** (len(mult) - 1),
        temporal_compression=2 ** sum(temporal),
        mid_attention=True,
        norm_eps=WAN_NORM_EPS,
        quant_conv=True,
        resample="wan",
        latent_mean=tuple(float(v) for v in wan["latents_mean"]),
        latent_std=tuple(float(v) for v in wan["latents_std"]),
    )
    ours = [config.downsamples_at(level)[1] for level in range(len(mult) - 1)]
    if ours != temporal:
        raise InvalidInputError(
            f"The Wan VAE's temperal_downsample {temporal} halves time at other levels than kinetoscope's {ours}.",
            param="source",
        )
    return config


def _layer_pairs(wan: Any, vae: CausalVAE) -> list[tuple[str, str, dict[str, str]]]:
    """(kinetoscope prefix, diffusers prefix, renames) for every layer, paired in the order both run them."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanAttentionBlock, WanResample, WanResidualBlock

    kinds = {WanResidualBlock: _RESIDUAL, WanAttentionBlock: _ATTENTION}
    mid = ["mid_block.resnets.0", "mid_block.attentions.0", "mid_block.resnets.1"]
    encoder = [f"down_blocks.{i}" for i in range(len(wan.encoder.down_blocks))] + mid
    decoder = list(mid)
    for i, block in enumerate(wan.decoder.up_blocks):
        decoder += [f"up_blocks.{i}.resnets.{k}" for k in range(len(block.resnets))]
        decoder += [f"up_blocks.{i}.upsamplers.0"] if block.upsamplers is not None else []
    pairs = [
        ("encoder.conv_in.", "encoder.conv_in.", {}),
        ("encoder.head.", "encoder.", {"norm.weight": "norm_out.gamma", "conv.": "conv_out."}),
        ("encoder.quant.", "quant_conv.", {}),
        ("decoder.post_quant.", "post_quant_conv.", {}),
        ("decoder.conv_in.", "decoder.conv_in.", {}),
        ("decoder.head.", "decoder.", {"norm.weight": "norm_out.gamma", "conv.": "conv_out."}),
    ]
    for side, names in (("encoder", encoder), ("decoder", decoder)):
        ours = getattr(vae, side).blocks
        if len(ours) != len(names):
            raise CheckpointError(
                f"The Wan VAE's {side} has {len(names)} layers where kinetoscope's has {len(ours)}.", param="source"
            )
        for i, name in enumerate(names):
            layer = wan.get_submodule(f"{side}.{name}")
            resample = _DOWN if side == "encoder" else _UP
            renames = kinds.get(type(layer), resample if isinstance(layer, WanResample) else None)
            if renames is None:
                raise CheckpointError(
                    f"The Wan VAE's {side}.{name} is a {type(layer).__name__}, which kinetoscope lacks.",
                    param="source",
                )
            pairs.append((f"{side}.blocks.{i}.", f"{side}.{name}.", renames))
    return pairs


def _wan_name(name: str, pairs: list[tuple[str, str, dict[str, str]]]) -> str:
    for ours, theirs, renames in pairs:
        if name.startswith(ours):
            rest = name[len(ours) :]
            for old, new in renames.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            return theirs + rest
    raise CheckpointError(f"kinetoscope's VAE tensor {name} has no Wan counterpart.", param="source")


def load_vae(vae_dir: str | Path) -> CausalVAE:
    """A CausalVAE (float32) with the weights and latent statistics of an ``AutoencoderKLWan`` directory."""
    diffusers = require("diffusers", "Importing a Wan checkpoint")
    vae_dir = Path(vae_dir)
    model = meta_model(diffusers.AutoencoderKLWan, vae_dir, VAE_CLASS)
    vae = CausalVAE(vae_config(model.config))
    vae.load_state_dict(vae_state_dict(model, read_safetensors(vae_dir), vae))
    return vae.eval()


def vae_state_dict(model: Any, wan: dict[str, Tensor], vae: CausalVAE) -> dict[str, Tensor]:
    """``vae``'s tensors from the ``AutoencoderKLWan`` ``model``'s (``wan``, emptied as they are used)."""
    pairs = _layer_pairs(model, vae)
    state = {}
    for name, own in vae.state_dict().items():
        source = _wan_name(name, pairs)
        if source not in wan:
            raise CheckpointError(f"The Wan VAE lacks {source}, which kinetoscope's {name} needs.", param="source")
        tensor = wan.pop(source)
        if tensor.numel() != own.numel():
            raise CheckpointError(
                f"The Wan VAE's {source} has shape {tuple(tensor.shape)}; {name} needs {tuple(own.shape)}.",
                param="source",
            )
        state[name] = tensor.reshape(own.shape)
    if wan:
        raise CheckpointError(
            f"The Wan VAE has {len(wan)} tensors kinetoscope has no place for (e.g. {sorted(wan)[:3]}).",
            param="source",
        )
    return state
