"""Reconstruct videos through the VAE and score them (PSNR, SSIM): what ``kinetoscope vae
reconstruct`` and ``kinetoscope eval vae`` run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kinetoscope.errors import CheckpointError
from kinetoscope.modeling import CONFIG_NAME
from kinetoscope.vae.losses import ssim
from kinetoscope.vae.model import CausalVAE


def load_vae(path: str | os.PathLike, device: str = "cpu") -> CausalVAE:
    """A VAE directory, or a model directory holding one in ``vae/``."""
    path = Path(path)
    if not (path / CONFIG_NAME).is_file() and (path / "vae" / CONFIG_NAME).is_file():
        path = path / "vae"
    if not path.is_dir():
        raise CheckpointError(f"VAE directory {path} does not exist.")
    return CausalVAE.from_pretrained(path, device=device)


def fit_frames(frames: np.ndarray, vae: CausalVAE) -> np.ndarray:
    """Drop trailing frames down to ``1 + tc*k`` and centre-crop to multiples of the spatial
    compression, so that any video can go through the VAE."""
    tc, s = vae.temporal_compression, vae.spatial_compression
    t, h, w = frames.shape[:3]
    keep_t = 1 + (t - 1) // tc * tc
    keep_h, keep_w = h // s * s, w // s * s
    top, left = (h - keep_h) // 2, (w - keep_w) // 2
    return frames[:keep_t, top : top + keep_h, left : left + keep_w]


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two videos in [-1, 1] (peak-to-peak range 2)."""
    mse = (x.double() - y.double()).square().mean().item()
    return float("inf") if mse == 0 else 10.0 * float(np.log10(4.0 / mse))


@torch.no_grad()
def reconstruct(vae: CausalVAE, frames: np.ndarray, **options) -> tuple[np.ndarray, dict[str, float]]:
    """uint8 (T, H, W, 3) frames through encode and decode; the result and its PSNR and SSIM."""
    from kinetoscope.io import frames_to_tensor, tensor_to_frames

    device = next(vae.parameters()).device
    x = frames_to_tensor(frames, device=device).unsqueeze(0)
    x_hat = vae.decode(vae.encode(x, **options), **options)
    out = tensor_to_frames(x_hat[0].cpu())
    # Scores compare what a viewer sees: both sides quantised to 8 bits.
    scored = frames_to_tensor(out).unsqueeze(0)
    scores = {"psnr": psnr(x.cpu(), scored), "ssim": ssim(x.cpu(), scored).item()}
    return out, scores | {"object_error": object_colour_error(frames, out)}


def object_colour_error(original: np.ndarray, reconstruction: np.ndarray) -> float | None:
    """Mean absolute error, in levels of 255, of the pixels that differ from the clip's median
    colour by more than 15% in some channel (its objects); None when nothing does."""
    from kinetoscope.data.latents import foreground_pixels
    from kinetoscope.io import frames_to_tensor

    objects = foreground_pixels(frames_to_tensor(original)).numpy()
    if not objects.any():
        return None
    return float(np.abs(original.astype(np.float32) - reconstruction.astype(np.float32))[objects].mean())
