"""Training losses for the VAE: reconstruction (L1 + SSIM), KL, and an optional 3D patch
discriminator with a hinge loss that switches on after a warm-up."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Any

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.config import Config
from kinetoscope.vae.model import DiagonalGaussian


@dataclasses.dataclass
class VAELossConfig(Config):
    l1_weight: float = 1.0
    #: Weight of the mean squared error. On sparse scenes (small objects on a plain background)
    #: L1 alone settles on the background: its gradient is the same size for every pixel, so the
    #: many background pixels' sign noise drowns the few object pixels. L2 weighs errors by size.
    l2_weight: float = 0.0
    #: How many times a pixel of an object (``kinetoscope.data.latents.foreground_pixels``) counts
    #: in L1 and L2 against one of the background: objects are a few percent of a world clip's
    #: pixels, and their colours and edges are what a viewer and the detectors judge.
    foreground_weight: float = 1.0
    #: Weight of (1 - SSIM); SSIM keeps edges and texture that L1 alone blurs.
    ssim_weight: float = 0.2
    #: Small, as in latent-diffusion VAEs: enough to keep latents bounded, not to blur them.
    kl_weight: float = 1e-6
    adversarial_weight: float = 0.1
    #: Generator steps before the discriminator joins (it destabilises an untrained decoder).
    discriminator_start: int = 2000

    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two videos (B, C, T, H, W) in [-1, 1], frame by frame
    (Wang et al. 2004, Gaussian window; frames smaller than the window use a smaller one)."""
    if torch.is_autocast_enabled(x.device.type):
        # Variances are differences of blurred squares: bf16's rounding of those (about 0.4% of 1)
        # exceeds SSIM's constant c2 = 0.0036, and the quotient goes to inf on flat frames.
        with torch.autocast(x.device.type, enabled=False):
            return ssim(x.float(), y.float(), window, sigma)
    b, c, t, h, w = x.shape
    window = min(window, h, w)
    frames_x = x.transpose(1, 2).reshape(b * t, c, h, w)
    frames_y = y.transpose(1, 2).reshape(b * t, c, h, w)
    kernel = _gaussian_window(window, sigma, c, x)

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, kernel, groups=c)

    c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2  # data range 2 for [-1, 1]
    mu_x, mu_y = blur(frames_x), blur(frames_y)
    var_x = blur(frames_x * frames_x) - mu_x.square()
    var_y = blur(frames_y * frames_y) - mu_y.square()
    cov = blur(frames_x * frames_y) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return score.mean()


def kl_loss(posterior: DiagonalGaussian) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)), averaged over latent elements."""
    return posterior.kl().mean()


class PatchDiscriminator(nn.Module):
    """A 3D PatchGAN: strided convs give one real/fake logit per spacetime patch, so it judges
    texture and flicker locally and accepts any frame count and size (multiples of 8)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv3d(in_channels, channels, (3, 4, 4), (1, 2, 2), (1, 1, 1)), nn.LeakyReLU(0.2)]
        ch = channels
        for _ in range(layers - 1):
            blocks += [
                nn.Conv3d(ch, 2 * ch, (3, 4, 4), (1, 2, 2), (1, 1, 1), bias=False),
                nn.GroupNorm(min(32, 2 * ch), 2 * ch),
                nn.LeakyReLU(0.2),
            ]
            ch *= 2
        blocks.append(nn.Conv3d(ch, 1, 3, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def discriminator_active(step: int, config: VAELossConfig) -> bool:
    """Whether the adversarial terms are on at this generator step."""
    return config.adversarial_weight > 0 and step >= config.discriminator_start


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def vae_loss(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    posterior: DiagonalGaussian,
    config: VAELossConfig,
    step: int = 0,
    discriminator: PatchDiscriminator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The autoencoder's (generator's) loss and its parts for logging.

    The adversarial term is added only when a discriminator is given and
    :func:`discriminator_active` says so; train the discriminator itself with
    :func:`hinge_discriminator_loss` on ``reconstruction.detach()``.
    """
    error = reconstruction - x
    l1, l2 = error.abs().mean(), error.square().mean()
    if config.foreground_weight != 1.0:
        from kinetoscope.data.latents import foreground_pixels

        weight = 1.0 + (config.foreground_weight - 1.0) * foreground_pixels(x).unsqueeze(1).to(x.dtype)
        weighted_l1 = (weight * error.abs()).sum() / (weight.sum() * x.shape[1])
        weighted_l2 = (weight * error.square()).sum() / (weight.sum() * x.shape[1])
    else:
        weighted_l1, weighted_l2 = l1, l2
    # SSIM's windows cost a fifth of a small VAE's step: without its term it is only logged.
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.ssim_weight > 0):
        similarity = ssim(reconstruction, x)
    kl = kl_loss(posterior)
    total = (
        config.l1_weight * weighted_l1
        + config.l2_weight * weighted_l2
        + config.ssim_weight * (1.0 - similarity)
        + config.kl_weight * kl
    )
    logs = {"l1": l1.item(), "l2": l2.item(), "ssim": similarity.item(), "kl": kl.item()}
    if discriminator is not None and discriminator_active(step, config):
        adversarial = hinge_generator_loss(discriminator(reconstruction))
        total = total + config.adversarial_weight * adversarial
        logs["adversarial"] = adversarial.item()
    logs["loss"] = total.item()
    return total, logs
