"""``CausalVAE``: the video compression network.

Encoder: causal conv in, residual levels with spatial/temporal halving, a middle block with
per-frame attention, and a causal conv out to the posterior's mean and log-variance.
Decoder: the mirror image. Frame 0 is encoded on its own, so an image is a one-frame video
and shares the latent space with videos: ``1 + tc*k`` frames -> ``1 + k`` latent frames.

Long videos go through in time chunks with a :class:`StreamCache` (exactly the one-shot
result, memory independent of duration); large frames go through in blended spatial tiles.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.errors import InvalidInputError
from kinetoscope.modeling import PretrainedModel
from kinetoscope.vae.config import VAEConfig
from kinetoscope.vae.layers import (
    CHANNELS_LAST,
    CausalConv3d,
    Downsample,
    FrameAttention,
    Head,
    ResBlock,
    StreamCache,
    Upsample,
)
from kinetoscope.vae.tiling import tiled_map

#: Pixel frames per time chunk after frame 0 (one latent frame with 4x time compression).
DEFAULT_CHUNK_FRAMES = 4
#: Frames larger than this (pixels, either side) are split into tiles with this much overlap.
DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64

LOGVAR_RANGE = (-30.0, 20.0)


@dataclasses.dataclass
class DiagonalGaussian:
    """The encoder's posterior q(z|x) per latent element (un-normalised latent space)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> "DiagonalGaussian":
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(*LOGVAR_RANGE))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, 1)) per latent element (same shape as ``mean``)."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar)


@dataclasses.dataclass
class VAEOutput:
    reconstruction: torch.Tensor
    posterior: DiagonalGaussian


def _channels(config: VAEConfig) -> list[int]:
    return [config.base_channels * m for m in config.channel_multipliers]


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _channels(config)
        self.patch = config.patch_size
        eps, wan = config.norm_eps, config.resample == "wan"
        self.conv_in = CausalConv3d(config.in_channels * self.patch**2, channels[0], 3)
        blocks: list[nn.Module] = []
        in_ch = channels[0]
        for level, ch in enumerate(channels):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(in_ch, ch, eps))
                in_ch = ch
            spatial, temporal = config.downsamples_at(level)
            if spatial or temporal:
                blocks.append(Downsample(ch, spatial, temporal, wan))
        blocks += _middle(in_ch, config.mid_attention, eps)
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(in_ch, 2 * config.latent_channels, eps)
        moments = 2 * config.latent_channels
        self.quant = CausalConv3d(moments, moments, 1) if config.quant_conv else None
        self.shortcut = config.shortcut
        self.sc, self.tc, self.latent_channels = config.spatial_compression, config.temporal_compression, config.latent_channels

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        pixels = x
        x = self.conv_in(space_to_depth(x, self.patch), cache)
        for block in self.blocks:
            x = block(x, cache)
        moments = self.head(x, cache)
        if self.quant is not None:
            moments = self.quant(moments)
        if not self.shortcut:
            return moments
        mean, logvar = moments.chunk(2, dim=1)
        colour = fold_pixels(pixels, self.sc, self.tc)
        c = colour.shape[1]
        return torch.cat([mean[:, :c] + colour, mean[:, c:], logvar], dim=1)


class Decoder(nn.Module):
    """Mirror of the encoder; like Wan 2.1 each upsampling halves the channels, and each level
    has one more residual block than the encoder's."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _channels(config)[::-1]
        levels = len(channels)
        in_ch = channels[0]
        eps, wan = config.norm_eps, config.resample == "wan"
        latent = config.latent_channels
        self.post_quant = CausalConv3d(latent, latent, 1) if config.quant_conv else None
        self.conv_in = CausalConv3d(latent, in_ch, 3)
        blocks: list[nn.Module] = list(_middle(in_ch, config.mid_attention, eps))
        for i, ch in enumerate(channels):
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(in_ch, ch, eps))
                in_ch = ch
            spatial, temporal = config.downsamples_at(levels - 2 - i) if i < levels - 1 else (False, False)
            if spatial or temporal:
                blocks.append(Upsample(ch, ch // 2, spatial, temporal, wan))
                in_ch = ch // 2
        self.blocks = nn.ModuleList(blocks)
        self.patch = config.patch_size
        self.head = Head(in_ch, config.in_channels * self.patch**2, eps)
        self.shortcut = config.shortcut
        self.sc, self.tc, self.out_channels = config.spatial_compression, config.temporal_compression, config.in_channels

    def forward(self, z: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        x = self.conv_in(z if self.post_quant is None else self.post_quant(z), cache)
        for block in self.blocks:
            x = block(x, cache)
        x = depth_to_space(self.head(x, cache), self.patch)
        if not self.shortcut:
            return x
        colour = unfold_latent(z[:, : self.out_channels * SHORTCUT_SAMPLES**2], self.sc, self.tc, frames=x.shape[2])
        return x + colour.contiguous(memory_format=CHANNELS_LAST)


#: The shortcut's colour samples per latent cell and side: 2 gives each cell's four quadrants' mean colours.
SHORTCUT_SAMPLES = 2


def fold_pixels(x: torch.Tensor, spatial: int, temporal: int) -> torch.Tensor:
    """Pixels ``(B, C, T, H, W)`` of one chunk -> the mean colours of each latent cell's quadrants,
    ``(B, 4C, t, H/s, W/s)``. A chunk of ``1 + temporal*k`` frames starts with a video's frame 0,
    a latent frame of its own."""
    block = spatial // SHORTCUT_SAMPLES
    first = x[:, :, :1] if x.shape[2] % temporal else x[:, :, :0]
    rest = x[:, :, first.shape[2] :]
    pieces = [F.avg_pool3d(first, (1, block, block))] if first.shape[2] else []
    if rest.shape[2]:
        pieces.append(F.avg_pool3d(rest, (temporal, block, block)))
    return space_to_depth(torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0], SHORTCUT_SAMPLES)


def unfold_latent(z: torch.Tensor, spatial: int, temporal: int, frames: int) -> torch.Tensor:
    """The inverse arrangement of :func:`fold_pixels`: each quadrant's colour spread over its pixels,
    ``(B, C, frames, H, W)``; the first latent frame covers one pixel frame when ``frames`` says it
    is a video's frame 0."""
    block = spatial // SHORTCUT_SAMPLES
    x = depth_to_space(z, SHORTCUT_SAMPLES).repeat_interleave(block, dim=3).repeat_interleave(block, dim=4)
    x = x.repeat_interleave(temporal, dim=2)
    return x[:, :, x.shape[2] - frames :] if frames < x.shape[2] else x

def space_to_depth(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C*p*p, T, H/p, W/p): each p x p block of pixels becomes one position."""
    if patch == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // patch, patch, w // patch, patch).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * patch * patch, t, h // patch, w // patch).contiguous(memory_format=CHANNELS_LAST)


def depth_to_space(x: torch.Tensor, patch: int) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`."""
    if patch == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (patch * patch)
    x = x.reshape(b, c, patch, patch, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, t, h * patch, w * patch).contiguous(memory_format=CHANNELS_LAST)


def _middle(channels: int, attention: bool, eps: float) -> list[nn.Module]:
    # Built in their order: a new VAE draws its initial weights in the same sequence as before.
    first = ResBlock(channels, channels, eps)
    attend = [FrameAttention(channels, eps)] if attention else []
    return [first, *attend, ResBlock(channels, channels, eps)]


def stream_frames(
    run: Callable[[torch.Tensor, StreamCache], torch.Tensor], x: torch.Tensor, chunk: int, out_frames: int
) -> torch.Tensor:
    """Run a causal network over time: frame 0 alone, then ``chunk`` frames at a time, carrying
    a :class:`StreamCache`. Results go straight into one preallocated output."""
    total = x.shape[2]
    bounds = [0, *range(1, total, chunk), total]
    cache = StreamCache()
    out = None
    position = 0
    for start, end in zip(bounds[:-1], bounds[1:]):
        cache.keep = end < total
        piece = run(x[:, :, start:end].contiguous(memory_format=CHANNELS_LAST), cache)
        if out is None:
            b, c, _, h, w = piece.shape
            out = piece.new_empty((b, c, out_frames, h, w))
        out[:, :, position : position + piece.shape[2]] = piece
        position += piece.shape[2]
        del piece
    return out


class CausalVAE(PretrainedModel):
    """Causal 3D VAE. Pixels (B, 3, 1 + tc*k, H, W) in [-1, 1] <-> normalised latents
    (B, C, 1 + k, H/s, W/s)."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    # ------------------------------------------------------------------ shape
    @property
    def spatial_compression(self) -> int:
        return self.config.spatial_compression

    @property
    def temporal_compression(self) -> int:
        return self.config.temporal_compression

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def check_frames(self, frames: int) -> None:
        tc = self.temporal_compression
        if frames < 1 or (frames - 1) % tc:
            raise InvalidInputError(
                f"The VAE takes 1 + {tc}k frames ({', '.join(str(1 + tc * k) for k in range(4))}, ...), got {frames}.",
                param="frames",
            )

    def check_size(self, height: int, width: int) -> None:
        s = self.spatial_compression
        if height < s or width < s or height % s or width % s:
            raise InvalidInputError(
                f"The VAE takes heights and widths that are positive multiples of {s}, got {height}x{width}.",
                param="size",
            )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, t, h, w) of the latent for a video of this shape (validated)."""
        self.check_frames(frames)
        self.check_size(height, width)
        s, tc = self.spatial_compression, self.temporal_compression
        return self.latent_channels, 1 + (frames - 1) // tc, height // s, width // s

    def _check_video(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise InvalidInputError(
                f"The VAE takes videos shaped (batch, {self.config.in_channels}, frames, height, width), "
                f"got {tuple(x.shape)}.",
                param="video",
            )
        self.latent_shape(*x.shape[2:])

    def _check_latent(self, z: torch.Tensor) -> None:
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise InvalidInputError(
                f"The VAE decodes latents shaped (batch, {self.latent_channels}, frames, height, width), "
                f"got {tuple(z.shape)}.",
                param="latent",
            )

    def _check_chunk(self, chunk_frames: int) -> None:
        tc = self.temporal_compression
        if chunk_frames < 1 or chunk_frames % tc:
            raise InvalidInputError(
                f"chunk_frames must be a positive multiple of the temporal compression {tc}, got {chunk_frames}.",
                param="chunk_frames",
            )

    def _check_tiles(self, tile_size: int | None, tile_overlap: int) -> None:
        if tile_size is None:
            return
        s = self.spatial_compression
        if tile_size < s or tile_size % s or tile_overlap < 0 or tile_overlap % s or tile_overlap >= tile_size:
            raise InvalidInputError(
                f"tile_size and tile_overlap must be multiples of {s} with 0 <= overlap < size, "
                f"got {tile_size} and {tile_overlap}.",
                param="tile_size",
            )

    # ------------------------------------------------------------------ latent normalisation
    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        mean, std = self.config.latent_mean, self.config.latent_std
        if not mean and not std:
            return None
        c = self.latent_channels
        mean_t = torch.tensor(mean or [0.0] * c, dtype=like.dtype, device=like.device).view(1, c, 1, 1, 1)
        std_t = torch.tensor(std or [1.0] * c, dtype=like.dtype, device=like.device).view(1, c, 1, 1, 1)
        return mean_t, std_t

    def normalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        stats = self._latent_stats(z)
        return z if stats is None else (z - stats[0]) / stats[1]

    def denormalize_latent(self, z: torch.Tensor) -> torch.Tensor:
        stats = self._latent_stats(z)
        return z if stats is None else z * stats[1] + stats[0]

    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        """Store measured per-channel statistics in the config (saved with the model)."""
        self.config = self.config.replace(latent_mean=tuple(mean), latent_std=tuple(std))

    # ------------------------------------------------------------------ encode / decode
    def encode_posterior(
        self,
        x: torch.Tensor,
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        tile_size: int | None = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
    ) -> DiagonalGaussian:
        """The posterior over un-normalised latents (for training with a KL term)."""
        self._check_video(x)
        self._check_chunk(chunk_frames)
        self._check_tiles(tile_size, tile_overlap)
        out_frames = 1 + (x.shape[2] - 1) // self.temporal_compression

        def encode_tile(tile: torch.Tensor) -> torch.Tensor:
            return stream_frames(self.encoder, tile, chunk_frames, out_frames)

        moments = self._tiled(encode_tile, x, tile_size, tile_overlap, Fraction(1, self.spatial_compression))
        return DiagonalGaussian.from_moments(moments)

    def encode(
        self,
        x: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        tile_size: int | None = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
    ) -> torch.Tensor:
        """Normalised latent: the posterior mean, or a sample drawn with ``generator``."""
        posterior = self.encode_posterior(x, chunk_frames=chunk_frames, tile_size=tile_size, tile_overlap=tile_overlap)
        z = posterior.sample(generator) if sample else posterior.mean
        return self.normalize_latent(z)

    def decode(
        self,
        z: torch.Tensor,
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        tile_size: int | None = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Pixels in [-1, 1] (clamped unless ``clamp=False``) from a normalised latent."""
        self._check_latent(z)
        self._check_chunk(chunk_frames)
        self._check_tiles(tile_size, tile_overlap)
        self.check_size(z.shape[-2] * self.spatial_compression, z.shape[-1] * self.spatial_compression)
        z = self.denormalize_latent(z)
        out_frames = 1 + (z.shape[2] - 1) * self.temporal_compression
        latent_chunk = chunk_frames // self.temporal_compression

        def decode_tile(tile: torch.Tensor) -> torch.Tensor:
            return stream_frames(self.decoder, tile, latent_chunk, out_frames)

        s = self.spatial_compression
        tile_latent = None if tile_size is None else tile_size // s
        x = self._tiled(decode_tile, z, tile_latent, tile_overlap // s, Fraction(s))
        return x.clamp_(-1.0, 1.0) if clamp and not x.requires_grad else (x.clamp(-1.0, 1.0) if clamp else x)

    def forward(
        self, x: torch.Tensor, *, sample: bool = True, generator: torch.Generator | None = None, **options
    ) -> VAEOutput:
        """Training pass: posterior, a latent from it, and the unclamped reconstruction."""
        posterior = self.encode_posterior(x, **options)
        z = posterior.sample(generator) if sample else posterior.mean
        return VAEOutput(self.decode(self.normalize_latent(z), clamp=False, **options), posterior)

    @staticmethod
    def _tiled(fn, x: torch.Tensor, tile: int | None, overlap: int, scale: Fraction) -> torch.Tensor:
        if tile is None:
            return fn(x)
        return tiled_map(fn, x, tile, overlap, scale)
