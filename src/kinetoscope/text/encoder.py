"""The built-in text encoder: a small pre-norm transformer trained together with the DiT.

Its tokenizer is part of it: ``save_pretrained`` writes ``tokenizer.json`` beside
``config.json`` and ``model.safetensors``, and ``from_pretrained`` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from kinetoscope.config import Config
from kinetoscope.errors import ConfigError, InvalidInputError
from kinetoscope.modeling import PretrainedModel
from kinetoscope.text.tokenizer import CaptionTokenizer

TOKENIZER_NAME = "tokenizer.json"


@dataclasses.dataclass
class TextEncoderConfig(Config):
    vocab_size: int = 8192
    width: int = 384
    depth: int = 4
    heads: int = 6
    ffn_dim: int = 1536
    max_length: int = 128

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"vocab_size": 512, "width": 64, "depth": 2, "heads": 2, "ffn_dim": 128, "max_length": 64},
        "s": {},
        "b": {"width": 768, "depth": 6, "heads": 12, "ffn_dim": 3072},
    }

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ConfigError(f"TextEncoderConfig.width {self.width} must be a multiple of heads {self.heads}.")


class TextEncoder(PretrainedModel):
    """Prompts -> ``(embeddings (B, L, width), mask (B, L) bool)``; trainable."""

    config_class = TextEncoderConfig

    def __init__(self, config: TextEncoderConfig, tokenizer: CaptionTokenizer | None = None):
        super().__init__(config)
        self.tokenizer = tokenizer
        self.token_embed = nn.Embedding(config.vocab_size, config.width)
        self.position_embed = nn.Parameter(torch.zeros(config.max_length, config.width))
        layer = nn.TransformerEncoderLayer(
            config.width,
            config.heads,
            config.ffn_dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.position_embed, std=0.02)

    @property
    def dim(self) -> int:
        return self.config.width

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token ids ``(B, L)`` and mask ``(B, L)`` -> embeddings ``(B, L, width)``."""
        x = self.token_embed(ids) + self.position_embed[: ids.shape[1]]
        return self.norm(self.layers(x, src_key_padding_mask=~mask))

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        if self.tokenizer is None:
            raise InvalidInputError("This text encoder has no tokenizer; give one or load it with from_pretrained.")
        if self.tokenizer.vocab_size > self.config.vocab_size:
            raise ConfigError(
                f"The tokenizer has {self.tokenizer.vocab_size} tokens but the encoder only {self.config.vocab_size}."
            )
        ids, mask = self.tokenizer.encode(prompts, self.config.max_length)
        device = self.token_embed.weight.device
        ids, mask = ids.to(device), mask.to(device)
        return self(ids, mask), mask

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        if self.tokenizer is None:
            raise InvalidInputError("Cannot save a text encoder without its tokenizer.")
        path = super().save_pretrained(directory, dtype)
        self.tokenizer.save(path / TOKENIZER_NAME)
        return path

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu", dtype=None
    ) -> TextEncoder:
        model = super().from_pretrained(directory, device, dtype)
        model.tokenizer = CaptionTokenizer.load(Path(directory) / TOKENIZER_NAME)
        return model
