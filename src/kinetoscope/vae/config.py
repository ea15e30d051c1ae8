"""``VAEConfig``: the shape of the causal 3D VAE, and the per-channel latent statistics.

Presets: ``tiny`` for tests, ``cpu`` for the bundled model (space-to-depth first, so it
trains and runs on two CPU cores), ``world`` (full-resolution convolutions, for a GPU), ``wan`` with the shape of
diffusers' ``AutoencoderKLWan`` (Wan 2.1) for side-by-side benchmarks. ``norm_eps``,
``quant_conv`` and ``resample="wan"`` reproduce Wan's layers exactly where weights cannot
(:mod:`kinetoscope.wan` imports Wan2.1's VAE with them).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from kinetoscope.config import Config
from kinetoscope.errors import ConfigError

RESAMPLE = ("causal", "wan")


@dataclasses.dataclass
class VAEConfig(Config):
    in_channels: int = 3
    #: Channels of the first level; level i has ``base_channels * channel_multipliers[i]``.
    base_channels: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    latent_channels: int = 16
    #: 4, 8 or 16: pixels per latent along height and width.
    spatial_compression: int = 8
    #: 1, 2 or 4: latent frame i > 0 covers pixel frames ``tc*i - tc + 1 .. tc*i``; frame 0 is alone.
    temporal_compression: int = 4
    #: Space-to-depth before the first convolution (and depth-to-space after the last): each
    #: ``patch_size`` x ``patch_size`` block of pixels becomes one position with that many times
    #: the channels, so every 3D convolution runs at ``1 / patch_size`` of the resolution (as
    #: LTX-Video's VAE does). Part of ``spatial_compression``, which must be a multiple of it.
    patch_size: int = 1
    #: Non-parametric shortcuts around the whole network (after DC-AE's residual autoencoding): the
    #: first ``4 * in_channels`` latent channels add the mean colours of each latent cell's four
    #: quadrants, and the decoder adds them back spread over the quadrants. The convolutions then learn a residual from the first
    #: step instead of escaping a state in which the decoder ignores its input, which a deep
    #: autoencoder takes hundreds of steps to leave.
    shortcut: bool = False
    #: Single-head attention within each frame in the middle block (as Wan does).
    mid_attention: bool = True
    #: Epsilon of every RMS norm. Wan's VAE normalises with ``F.normalize``, whose epsilon never
    #: matters: 1e-12 reproduces it.
    norm_eps: float = 1e-6
    #: Wan's 1x1x1 convolutions after the encoder's head (``quant_conv``) and before the decoder's
    #: first layer (``post_quant_conv``). The first could fold into the head; the second cannot fold
    #: into the decoder's first convolution, whose zero padding would then pad its bias.
    quant_conv: bool = False
    #: ``"causal"``: every output frame of a time resampling comes out of its causal convolution,
    #: frame 0 too, and strided spatial convolutions pad both sides. ``"wan"``: as Wan's VAE, frame
    #: 0 passes the time down- and upsampling unchanged, the time upsampling's history starts at
    #: frame 1, and a stride-2 convolution pads only the bottom and right.
    resample: str = "causal"
    #: Per-channel statistics of un-normalised latents, measured on data (``kinetoscope.vae.stats``).
    #: ``encode`` returns ``(z - mean) / std``; empty means 0 and 1.
    latent_mean: tuple[float, ...] = ()
    latent_std: tuple[float, ...] = ()

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "base_channels": 8,
            "channel_multipliers": (1, 2, 2, 2),
            "num_res_blocks": 1,
            "latent_channels": 4,
        },
        # ~18M parameters: trains on one GPU in well under an hour, runs on a laptop CPU.
        # 16 latent channels (not 8): sharp ball edges and saturated colours reconstruct
        # better, and the DiT's cost depends on token count, not on channels per token.
        "world": {
            "base_channels": 48,
            "channel_multipliers": (1, 2, 2, 4),
            "num_res_blocks": 1,
            "latent_channels": 16,
        },
        # CPU-first (~5.7M): 4x4 space-to-depth, so the convolutions see 1/16 of the pixels, then
        # one strided halving to 8x; 4x in time. Made to train, encode and decode on two CPU cores.
        "cpu": {
            "base_channels": 48,
            "channel_multipliers": (1, 2, 2),
            "num_res_blocks": 1,
            "latent_channels": 16,
            "patch_size": 4,
            "shortcut": True,
        },
        # AutoencoderKLWan(base_dim=96, dim_mult=[1, 2, 4, 4], num_res_blocks=2, z_dim=16).
        "wan": {
            "base_channels": 96,
            "channel_multipliers": (1, 2, 4, 4),
            "num_res_blocks": 2,
            "latent_channels": 16,
        },
    }

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise ConfigError(f"VAEConfig.resample is {self.resample!r}; choose one of {', '.join(RESAMPLE)}.")
        if not self.norm_eps > 0:
            raise ConfigError(f"VAEConfig.norm_eps is {self.norm_eps}; it must be positive.")
        if self.spatial_compression not in (4, 8, 16):
            raise ConfigError(f"spatial_compression must be 4, 8 or 16, got {self.spatial_compression}.")
        if self.temporal_compression not in (1, 2, 4):
            raise ConfigError(f"temporal_compression must be 1, 2 or 4, got {self.temporal_compression}.")
        if self.patch_size not in (1, 2, 4, 8) or self.spatial_compression % self.patch_size:
            raise ConfigError(
                f"patch_size must be 1, 2, 4 or 8 and divide spatial_compression {self.spatial_compression}, "
                f"got {self.patch_size}."
            )
        if self.shortcut and (self.latent_channels < 4 * self.in_channels or self.spatial_compression < 2):
            raise ConfigError(
                f"shortcut carries the colours of each cell's quadrants in the first {4 * self.in_channels} latent "
                f"channels; latent_channels {self.latent_channels} is fewer."
            )
        transitions = len(self.channel_multipliers) - 1
        needed = max(self.spatial_downsamples, self.temporal_downsamples)
        if transitions < needed:
            raise ConfigError(
                f"channel_multipliers {list(self.channel_multipliers)} gives {transitions} downsampling steps; "
                f"compression {self.spatial_compression}x{self.temporal_compression} needs at least {needed} "
                f"(give {needed + 1} multipliers)."
            )
        for name in ("base_channels", "num_res_blocks", "latent_channels", "in_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("latent_mean", "latent_std"):
            values = getattr(self, name)
            if values and len(values) != self.latent_channels:
                raise ConfigError(
                    f"{name} has {len(values)} entries; it needs one per latent channel ({self.latent_channels}) or none."
                )
        if any(s <= 0 for s in self.latent_std):
            raise ConfigError(f"latent_std entries must be positive, got {list(self.latent_std)}.")

    @property
    def spatial_downsamples(self) -> int:
        """Strided halvings in the network; the rest of the compression is the space-to-depth patch."""
        return int(math.log2(self.spatial_compression // self.patch_size))

    @property
    def temporal_downsamples(self) -> int:
        return int(math.log2(self.temporal_compression))

    def downsamples_at(self, level: int) -> tuple[bool, bool]:
        """(spatial, temporal) halving after encoder ``level``: space early (cheap), time late (as Wan)."""
        if self.patch_size not in (1, 2, 4, 8) or self.spatial_compression % self.patch_size:
            raise ConfigError(
                f"patch_size must be 1, 2, 4 or 8 and divide spatial_compression {self.spatial_compression}, "
                f"got {self.patch_size}."
            )
        transitions = len(self.channel_multipliers) - 1
        if level >= transitions:
            return False, False
        return level < self.spatial_downsamples, level >= transitions - self.temporal_downsamples
