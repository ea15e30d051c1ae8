"""The diffusion transformer's configuration and its named presets."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from kinetoscope.config import Config
from kinetoscope.errors import ConfigError

TEXT_ATTENTION = ("cross", "joint")


@dataclasses.dataclass
class DiTConfig(Config):
    """Shape of a :class:`~kinetoscope.dit.model.DiT`.

    ``text_attention="cross"`` is Wan2.1's block (self-attention, cross-attention to the text,
    feed-forward); ``"joint"`` is MMDiT's (text tokens join each sample's sequence and have
    their own weights). The ``s`` and ``b`` presets use a feed-forward of twice the width, which
    pays for the cross-attention and keeps them at the sizes of the physical-law paper's DiT-S
    (22M) and of DiT-B (90M); ``1.3b`` is Wan2.1-1.3B's shape exactly.

    ``text_len`` > 0 reproduces Wan2.1's text input: each prompt's embeddings are padded with
    zero vectors to ``text_len`` tokens and the cross-attention reads the padding too (Wan's
    weights learned with 512 of them, so they change what it makes). 0 reads the prompt's
    tokens only.
    """

    in_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    width: int = 384
    depth: int = 12
    heads: int = 6
    ffn_dim: int = 768
    text_dim: int = 384
    text_attention: str = "cross"
    freq_dim: int = 256
    rope_theta: float = 10000.0
    position_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    eps: float = 1e-6
    text_len: int = 0
    #: Add each token's place in its frame to its embedding (:class:`~kinetoscope.dit.model.FramePosition`).
    #: RoPE gives attention only offsets between tokens, so without it a token can tell where it is
    #: only from the frame's edges, and "at the top left" cannot be learned.
    frame_position: bool = False

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"in_channels": 4, "width": 64, "depth": 2, "heads": 2, "ffn_dim": 128, "text_dim": 64, "freq_dim": 64},
        "s": {},
        "b": {"width": 768, "heads": 12, "ffn_dim": 1536, "text_dim": 768},
        "1.3b": {"width": 1536, "depth": 30, "heads": 12, "ffn_dim": 8960, "text_dim": 4096},
    }

    def __post_init__(self) -> None:
        if self.text_attention not in TEXT_ATTENTION:
            raise ConfigError(
                f"DiTConfig.text_attention is {self.text_attention!r}; choose one of {', '.join(TEXT_ATTENTION)}."
            )
        if self.width % self.heads:
            raise ConfigError(f"DiTConfig.width {self.width} must be a multiple of heads {self.heads}.")
        if self.head_dim % 2 or self.head_dim < 8:
            raise ConfigError(f"DiTConfig head width {self.head_dim} (width / heads) must be even and at least 8.")
        if self.text_len < 0:
            raise ConfigError(f"DiTConfig.text_len is {self.text_len}; it must be 0 (no padding) or a token count.")
        if len(self.position_scale) != 3 or any(not s > 0 for s in self.position_scale):
            raise ConfigError(f"DiTConfig.position_scale {self.position_scale} must be three positive numbers.")
        if any(p < 1 for p in self.patch_size):
            raise ConfigError(f"DiTConfig.patch_size {self.patch_size} must be positive integers.")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def patch_dim(self) -> int:
        """Features per token: ``in_channels * pt * ph * pw``."""
        pt, ph, pw = self.patch_size
        return self.in_channels * pt * ph * pw
