"""The causal 3D VAE: the video compression network (``CausalVAE``, ``VAEConfig``)."""

from kinetoscope.vae.config import VAEConfig
from kinetoscope.vae.model import CausalVAE, DiagonalGaussian, VAEOutput

__all__ = ["CausalVAE", "DiagonalGaussian", "VAEConfig", "VAEOutput"]
