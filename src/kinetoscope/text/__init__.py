"""Text encoders with one interface: ``encode(prompts) -> (embeddings (B, L, D), mask (B, L) bool)``.

:class:`TextEncoder` is built in (own tokenizer, trained with the DiT); :class:`HFTextEncoder`
wraps a frozen T5 / UMT5 / CLIP text model from a local directory.
"""

from kinetoscope.text.encoder import TextEncoder, TextEncoderConfig
from kinetoscope.text.hf import HFTextEncoder
from kinetoscope.text.tokenizer import CaptionTokenizer

__all__ = ["CaptionTokenizer", "HFTextEncoder", "TextEncoder", "TextEncoderConfig"]
