"""A frozen Hugging Face text encoder (T5, UMT5, CLIP text) loaded from a local directory.

Nothing is downloaded: the directory must hold the model and its tokenizer as
``save_pretrained`` writes them. The encoder is frozen, so a prompt always gives the same
embedding; each prompt's embedding is kept in a bounded cache and reused, so a training run
over a fixed caption set runs the encoder once per caption.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from kinetoscope.errors import CheckpointError, InvalidInputError, require

# model_type in config.json -> transformers class holding just the text encoder.
ENCODER_CLASSES = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel",
    "clip_text_model": "CLIPTextModel",
}


class HFTextEncoder:
    """Prompts -> ``(embeddings (B, L, dim), mask (B, L) bool)`` from a local HF encoder, with a cache."""

    def __init__(
        self,
        path: str | os.PathLike,
        max_length: int = 512,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        cache_size: int = 65536,
    ):
        transformers = require("transformers", "A Hugging Face text encoder")
        path = Path(path)
        self.path = path  # where it loads from: a model directory copies it from here
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path} is not a Hugging Face model directory: config.json is missing.")
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type not in ENCODER_CLASSES:
            raise CheckpointError(
                f"{path} holds a {config.model_type!r} model; text encoders of type "
                f"{', '.join(sorted(ENCODER_CLASSES))} are supported."
            )
        model_class = getattr(transformers, ENCODER_CLASSES[config.model_type])
        self.model = model_class.from_pretrained(path, local_files_only=True, dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.max_length = max_length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> list[Tensor]:
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        lengths = tokens.attention_mask.sum(1).tolist()
        return [h[:n].clone() for h, n in zip(hidden, lengths)]

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        if isinstance(prompts, str):
            raise InvalidInputError("encode takes a list of prompts, not a single string.")
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            for prompt, embedding in zip(missing, self._run(missing)):
                self._cache[prompt] = embedding
        for prompt in prompts:
            self._cache.move_to_end(prompt)
        embeddings = [self._cache[p] for p in prompts]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        length = max((e.shape[0] for e in embeddings), default=0)
        out = embeddings[0].new_zeros(len(prompts), length, self.dim) if embeddings else torch.zeros(0, 0, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool, device=out.device)
        for row, e in enumerate(embeddings):
            out[row, : e.shape[0]] = e
            mask[row, : e.shape[0]] = True
        return out, mask
