"""Spacetime patches, 3D RoPE, packed attention and the diffusion transformer."""

from kinetoscope.dit.attention import packed_attention
from kinetoscope.dit.config import DiTConfig
from kinetoscope.dit.model import DiT
from kinetoscope.dit.patches import PackedBatch, pack, patchify, unpatchify

__all__ = ["DiT", "DiTConfig", "PackedBatch", "pack", "packed_attention", "patchify", "unpatchify"]
