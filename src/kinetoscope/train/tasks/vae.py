"""Train the causal 3D VAE on pixels at native size (world clips or a manifest).

Loss: ``kinetoscope.vae.losses.vae_loss`` (L1 + SSIM + KL), plus a patch discriminator's
hinge loss once ``loss.discriminator_start`` is reached. The discriminator has its own optimizer;
the loop back-propagates the VAE's loss into the VAE only and the discriminator's loss into the
discriminator only, so one forward of each serves both. At the end the per-channel latent
mean and std are measured on training data and stored in the exported VAE's config.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.batching import pixel_count
from kinetoscope.data.datasets import VideoSample, collate_videos, group_by_shape
from kinetoscope.errors import ConfigError, KinetoscopeError
from kinetoscope.train.data import shape_rule, video_source
from kinetoscope.train.tasks.base import LossOutput, OptimizerSpec, ShapeGroups, StepContext, Task


@dataclasses.dataclass
class VAETaskConfig(Config):
    #: ``VAEConfig`` preset, and field overrides on top of it.
    preset: str = "tiny"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Start from a saved VAE directory instead of random weights.
    init_from: str | None = None
    #: Term weights and the discriminator's start (``kinetoscope.vae.losses.VAELossConfig``);
    #: ``adversarial_weight: 0`` trains without a discriminator.
    loss: dict[str, Any] = dataclasses.field(default_factory=dict)
    discriminator_channels: int = 64
    discriminator_lr_scale: float = 1.0
    #: Clips of training data the exported latent mean/std are measured on.
    stats_batches: int = 4
    #: Train on random ``[height, width]`` crops (multiples of the spatial compression) of each clip
    #: instead of whole clips: the VAE is convolutional, the scale of the scene stays as rendered,
    #: and every micro-batch is one shape (one batched convolution per layer, not one per size).
    crop: tuple[int, int] | None = None
    #: Decode a sample of the posterior (a VAE) or its mean (an autoencoder with a KL-bounded latent).
    #: The posterior starts with a standard deviation near 1, and with the usual tiny KL weight it
    #: takes thousands of steps to shrink: until then the decoder sees mostly noise. A short
    #: budget learns several times faster from the mean.
    sample_posterior: bool = True
    #: ``false`` trains the decoder alone and keeps ``init_from``'s encoder and latent statistics,
    #: so every latent dataset that encoder wrote stays valid (``kinetoscope.data.latents.vae_digest``):
    #: a later leg sharpens the pictures without encoding the data again or unsettling the transformer.
    train_encoder: bool = True


class VAETask(Task):
    config_class = VAETaskConfig
    no_ema = ("disc",)
    replicate_only = ("disc",)  # used by two backward passes, which FSDP2's resharding does not allow

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from kinetoscope.vae.losses import VAELossConfig

        self.loss_config = VAELossConfig.from_dict(self.options.loss)
        if not self.options.train_encoder and not self.options.init_from:
            raise ConfigError("task.train_encoder: false keeps a trained encoder: set task.init_from=VAE_DIR too.")

    @property
    def uses_discriminator(self) -> bool:
        return self.loss_config.adversarial_weight > 0

    def _vae_config(self):
        from kinetoscope.vae import VAEConfig

        if self.options.init_from:
            return VAEConfig.load_json(Path(self.options.init_from) / "config.json")
        return VAEConfig.from_preset(self.options.preset, **self.options.model)

    def build_models(self) -> dict[str, nn.Module]:
        from kinetoscope.vae import CausalVAE

        o = self.options
        vae = CausalVAE.from_pretrained(o.init_from) if o.init_from else CausalVAE(self._vae_config())
        if not o.train_encoder:
            vae.encoder.requires_grad_(False)  # no gradient, no optimizer state, no EMA: kept as loaded
        models: dict[str, nn.Module] = {"vae": ShapeGroups(vae.train())}
        if self.uses_discriminator:
            from kinetoscope.vae.losses import PatchDiscriminator

            models["disc"] = ShapeGroups(PatchDiscriminator(channels=self.options.discriminator_channels))
        return models

    def optimizers(self, models: dict[str, nn.Module]) -> dict[str, OptimizerSpec]:
        specs = {"vae": OptimizerSpec(("vae",))}
        if "disc" in models:
            specs["disc"] = OptimizerSpec(("disc",), self.options.discriminator_lr_scale)
        return specs

    def data(self):
        cfg = self._vae_config()
        shape = shape_rule(self.train, cfg.spatial_compression, cfg.temporal_compression)
        return video_source(self.train, shape, pixel_count), collate_videos

    def loss(self, models: dict[str, nn.Module], batch: list[VideoSample], ctx: StepContext) -> LossOutput:
        from kinetoscope.vae.losses import (
            discriminator_active,
            hinge_discriminator_loss,
            hinge_generator_loss,
            vae_loss,
        )

        if self.options.crop is not None:
            batch = [self._cropped(sample, ctx.generator) for sample in batch]
        xs = [pixels.to(ctx.device, non_blocking=True) for pixels, _ in group_by_shape(batch)]
        weights = [x.numel() / sum(y.numel() for y in xs) for x in xs]  # every pixel counts the same
        # Posterior samples draw from the step generator on the CPU (the global CUDA RNG on a GPU).
        generator = ctx.generator if ctx.device.type == "cpu" else None
        outs = models["vae"](xs, sample=self.options.sample_posterior, generator=generator)
        loss = torch.zeros((), device=ctx.device)
        metrics = {"l1": 0.0, "l2": 0.0, "ssim": 0.0, "kl": 0.0, "adversarial": 0.0}
        for w, x, out in zip(weights, xs, outs):
            total, logs = vae_loss(x, out.reconstruction, out.posterior, self.loss_config)
            loss = loss + w * total
            for key in ("l1", "l2", "ssim", "kl"):
                metrics[key] += w * logs[key]
        losses = {"vae": loss}
        if self.uses_discriminator and discriminator_active(ctx.step, self.loss_config):
            # One discriminator forward on real and reconstructed clips serves both losses; the
            # loop sends the VAE's loss into the VAE only and this one into the discriminator only.
            logits = models["disc"]([torch.cat([x, out.reconstruction]) for x, out in zip(xs, outs)])
            adversarial = sum(w * hinge_generator_loss(lg[len(x) :]) for w, lg, x in zip(weights, logits, xs))
            losses["vae"] = loss + self.loss_config.adversarial_weight * adversarial
            losses["disc"] = sum(
                w * hinge_discriminator_loss(lg[: len(x)], lg[len(x) :]) for w, lg, x in zip(weights, logits, xs)
            )
            metrics["adversarial"] = float(adversarial.detach())
        return LossOutput(losses, metrics, tokens=sum(x.numel() // 3 for x in xs))

    def _cropped(self, sample: VideoSample, generator: torch.Generator) -> VideoSample:
        height, width = self.options.crop
        _, _, h, w = sample.pixels.shape
        if h < height or w < width:
            raise KinetoscopeError(f"task.crop {height}x{width} (height x width) is larger than a {h}x{w} clip.")
        top = int(torch.randint(h - height + 1, (1,), generator=generator))
        left = int(torch.randint(w - width + 1, (1,), generator=generator))
        pixels = sample.pixels[:, :, top : top + height, left : left + width]
        return dataclasses.replace(sample, pixels=pixels)

    def sample(self, models: dict[str, nn.Module], step: int, out_dir: Path) -> list[Path]:
        """The first clips of the stream beside their reconstructions."""
        from kinetoscope.io import tensor_to_frames, write_video

        vae = models["vae"].module
        written = []
        for i, x in enumerate(self._clips(2, next(vae.parameters()).device)):
            with torch.no_grad():
                recon = vae.decode(vae.encode(x))
            side_by_side = torch.cat([x, recon], dim=-1)[0]
            path = out_dir / f"step_{step:08d}_{i}.mp4"
            written.append(write_video(path, tensor_to_frames(side_by_side), self.train.data.world.fps))
        return written

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        """Measure the latent mean/std on training data, store them in the config, save the VAE."""
        from kinetoscope.vae.stats import measure_latent_stats

        vae = models["vae"].module
        if not self.options.train_encoder:  # the loaded encoder's statistics still hold
            vae.save_pretrained(out_dir)
            return
        mean, std = measure_latent_stats(vae, self._clips(self.options.stats_batches, next(vae.parameters()).device))
        vae.set_latent_stats(mean, std)
        vae.save_pretrained(out_dir)

    def _clips(self, count: int, device: torch.device) -> Iterator[torch.Tensor]:
        """The first ``count`` readable clips of the data, each ``(1, 3, T, H, W)``."""
        source, _ = self.data()
        found = 0
        for index in itertools.count():
            if found == count or index >= 10 * count:  # a manifest of mostly unreadable files ends the search
                return
            try:
                sample = source.load(index)
            except (KinetoscopeError, OSError):
                continue
            found += 1
            yield sample.pixels.unsqueeze(0).to(device)


TASK = VAETask
