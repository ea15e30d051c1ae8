"""A byte-level BPE tokenizer trained on captions with Hugging Face ``tokenizers``.

Byte-level means every string can be encoded and decodes back exactly, whatever its
characters. Each encoding ends with ``</s>``, so even the empty prompt (the unconditional
prompt of classifier-free guidance) has one token. Saved as a single ``tokenizer.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from torch import Tensor

from kinetoscope.errors import CheckpointError, InvalidInputError
from kinetoscope.files import atomic_write_text

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


class CaptionTokenizer:
    """Text <-> token ids; ``encode`` pads a batch to its longest prompt and returns a mask."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.token_to_id(PAD)
        self.eos_id = tokenizer.token_to_id(EOS)
        if self.pad_id is None or self.eos_id is None:
            raise CheckpointError(f"A caption tokenizer needs the special tokens {PAD} and {EOS}.")

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2) -> CaptionTokenizer:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[PAD, EOS, UNK],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tokenizer.train_from_iterator(captions, trainer)
        eos_id = tokenizer.token_to_id(EOS)
        tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos_id)])
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CaptionTokenizer:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Tokenizer file {path} does not exist.")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception for malformed files
            raise CheckpointError(f"Tokenizer file {path} could not be read: {e}.") from None

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.tokenizer.to_str())

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, prompts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """Token ids ``(B, L)`` (int64, padded with ``pad_id``) and mask ``(B, L)`` bool; ``L <= max_length``.

        Longer prompts are cut to ``max_length`` tokens, still ending with ``</s>``.
        """
        if isinstance(prompts, str):
            raise InvalidInputError("encode takes a list of prompts, not a single string.")
        encodings = self.tokenizer.encode_batch(list(prompts))
        ids = [e.ids[: max_length - 1] + [self.eos_id] if len(e.ids) > max_length else e.ids for e in encodings]
        length = max((len(i) for i in ids), default=0)
        out = torch.full((len(ids), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), length), dtype=torch.bool)
        for row, seq in enumerate(ids):
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = True
        return out, mask

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)
