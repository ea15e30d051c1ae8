"""Measure the per-channel mean and std of un-normalised latents over data, to store in the
config so that ``encode`` hands the diffusion model latents of roughly unit scale."""

from __future__ import annotations

from typing import Iterable

import torch

from kinetoscope.vae.model import CausalVAE


@torch.no_grad()
def measure_latent_stats(vae: CausalVAE, videos: Iterable[torch.Tensor], **encode_options) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) of posterior means over every latent element of ``videos``
    (each a (B, 3, T, H, W) batch; sizes may differ). Accumulated in float64."""
    channels = vae.latent_channels
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for video in videos:
        mean = vae.encode_posterior(video, **encode_options).mean.to(torch.float64).cpu()
        per_channel = mean.transpose(0, 1).reshape(channels, -1)
        total += per_channel.sum(1)
        total_sq += per_channel.square().sum(1)
        count += per_channel.shape[1]
    if count == 0:
        raise ValueError("measure_latent_stats needs at least one video.")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
