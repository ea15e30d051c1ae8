"""The built-in re-captioner: a small video-to-text transformer trained on world clips.

Frames are resized to ``image_size`` squares and cut into tubelets: ``tubelet`` consecutive
frames by ``patch`` x ``patch`` pixels, one token each, with learned embeddings for its time
step, row and column. A tubelet spanning two frames shows which way what is in it moves, so
the direction of motion is in a token's own content rather than only in a comparison across
tokens, which a small model learns far more slowly. A few encoder blocks attend within each
time step (where an object's patches are); a causal decoder over the caption tokenizer's ids
attends to every token of every time step. Greedy decoding with a key/value cache writes the
caption.

The model reads at most ``frames`` frames (the first ones): the captions it learned state
frame numbers from 0, so longer clips are cut, never resampled.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.config import Config
from kinetoscope.errors import CheckpointError, InvalidInputError
from kinetoscope.modeling import PretrainedModel

if TYPE_CHECKING:
    from kinetoscope.text.tokenizer import CaptionTokenizer

TOKENIZER_NAME = "tokenizer.json"


@dataclasses.dataclass
class CaptionerConfig(Config):
    image_size: int = 96
    #: Pixels per token side: the stem's total stride.
    patch: int = 8
    #: Frames per token (stacked as channels); a short last tubelet repeats its last frame.
    tubelet: int = 9
    #: Most frames read (the first ones); shorter clips are fine.
    frames: int = 9
    #: Channels of the stem's first convolution (its second has twice as many).
    stem_channels: int = 32
    #: Width in cells of the neighbourhood each frame's features are mixed over before a
    #: token joins its cell's frames (0: none; see :class:`FrameContext`).
    stem_context: int = 0
    dim: int = 128
    heads: int = 4
    encoder_layers: int = 1
    decoder_layers: int = 3
    mlp_ratio: float = 4.0
    #: Longest caption in tokens, the start and end tokens included.
    max_tokens: int = 256
    #: Set from the caption tokenizer; its end-of-text token also starts every caption.
    vocab_size: int = 512
    pad_id: int = 0
    eos_id: int = 1

    presets: ClassVar[dict] = {
        "tiny": {
            "image_size": 32,
            "patch": 8,
            "tubelet": 5,
            "frames": 5,
            "stem_channels": 16,
            "dim": 32,
            "heads": 2,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "max_tokens": 96,
        },
        "world": {},
    }

    def __post_init__(self) -> None:
        if self.patch % 2 or self.image_size % self.patch:
            raise InvalidInputError(
                f"patch {self.patch} must be even and image_size {self.image_size} a multiple of it."
            )
        if self.dim % self.heads:
            raise InvalidInputError(f"dim {self.dim} must be a multiple of heads {self.heads}.")
        if self.stem_context < 0 or (self.stem_context and self.stem_context % 2 == 0):
            raise InvalidInputError(f"stem_context must be 0 or an odd number of cells, got {self.stem_context}.")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    @property
    def steps(self) -> int:
        """Time steps (tubelets) of a clip of ``frames`` frames."""
        return -(-self.frames // self.tubelet)


class Attention(nn.Module):
    """Multi-head attention; ``cache`` (a dict) keeps keys and values between decoding steps."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        causal: bool = False,
        mask: torch.Tensor | None = None,
        cache: dict | None = None,
    ) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        if context is not None and cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # cross-attention: the video's keys never change
        else:
            source = x if context is None else context
            k, v = self.kv(source).view(b, source.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
            if cache is not None and context is None and "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            if cache is not None:
                cache["k"], cache["v"] = k, v
        # With a cache a causal step attends to everything before it: no mask needed.
        is_causal = causal and (cache is None or n > 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ratio: float):
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.cross_attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm3, self.mlp = nn.LayerNorm(dim), MLP(dim, ratio)

    def forward(
        self, x: torch.Tensor, video: torch.Tensor, video_mask: torch.Tensor | None, cache: dict | None = None
    ) -> torch.Tensor:
        x = x + self.self_attn(
            self.norm1(x), causal=True, cache=None if cache is None else cache.setdefault("self", {})
        )
        x = x + self.cross_attn(
            self.norm2(x), video, mask=video_mask, cache=None if cache is None else cache.setdefault("cross", {})
        )
        return x + self.mlp(self.norm3(x))


class Captioner(PretrainedModel):
    """``forward(pixels, tokens)`` -> next-token logits; :meth:`generate` -> token ids.

    ``pixels`` (B, 3, T, H, W) in [-1, 1] at any size; ``tokens`` (B, L) start with the
    tokenizer's end-of-text id, which also ends every caption (as GPT-2 does).
    Save and load with ``save_pretrained`` / ``from_pretrained``; the caption tokenizer, when
    attached as ``.tokenizer``, is saved beside the weights and loaded with them.
    """

    config_class = CaptionerConfig

    def __init__(self, config: CaptionerConfig):
        super().__init__(config)
        c = config
        self.tokenizer: CaptionTokenizer | None = None
        self.stem = Stem(c.tubelet, c.stem_channels, c.dim, c.patch, c.stem_context)
        self.step_pos = nn.Parameter(torch.randn(c.steps, 1, c.dim) * 0.02)
        self.row_pos = nn.Parameter(torch.randn(c.grid, 1, c.dim) * 0.02)
        self.col_pos = nn.Parameter(torch.randn(1, c.grid, c.dim) * 0.02)
        self.encoder = nn.ModuleList(EncoderBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.encoder_layers))
        self.encoder_norm = nn.LayerNorm(c.dim)
        self.token_embed = nn.Embedding(c.vocab_size, c.dim)
        self.token_pos = nn.Parameter(torch.randn(c.max_tokens, c.dim) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(c.dim, c.heads, c.mlp_ratio) for _ in range(c.decoder_layers))
        self.norm = nn.LayerNorm(c.dim)
        self.apply(_init_weights)

    # ------------------------------------------------------------------ the video
    def encode(self, pixels: torch.Tensor, frame_counts: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens ``(B, steps * grid * grid, dim)`` of the first ``frames`` frames, squared to ``image_size``.

        ``frame_counts`` marks samples shorter than the batch: their last real frame stands in
        for the padding, so a tubelet straddling the end sees no motion that is not there.
        """
        c = self.config
        if pixels.ndim != 5 or pixels.shape[1] != 3:
            raise InvalidInputError(
                f"Captioner input must be (batch, 3, frames, height, width), got {tuple(pixels.shape)}."
            )
        x = square_frames(pixels, c.image_size, c.frames)
        if frame_counts is not None:
            last = (frame_counts.clamp(1, x.shape[2]) - 1).to(x.device)
            held = torch.minimum(torch.arange(x.shape[2], device=x.device)[None, :], last[:, None])
            x = x.transpose(1, 2)[torch.arange(x.shape[0], device=x.device)[:, None], held].transpose(1, 2)
        k, g, s = c.tubelet, c.grid, c.image_size
        if x.shape[2] % k:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, k - x.shape[2] % k, -1, -1)], dim=2)
        b, t = x.shape[0], x.shape[2] // k
        tubes = x.reshape(b, 3, t, k, s, s).permute(0, 2, 3, 1, 4, 5).reshape(b * t, k, 3, s, s)
        tokens = self.stem(tubes)
        position = (self.row_pos + self.col_pos).reshape(1, g * g, -1)
        tokens = tokens + position + self.step_pos[:t].repeat(b, 1, 1)
        for block in self.encoder:  # attention within each time step
            tokens = block(tokens)
        return self.encoder_norm(tokens).reshape(b, t * g * g, -1)

    def video_mask(self, frame_counts: torch.Tensor | None, tokens: int) -> torch.Tensor | None:
        """Cross-attention mask ``(B, 1, 1, tokens)`` hiding padded frames (samples shorter than the batch)."""
        if frame_counts is None:
            return None
        per_step = self.config.grid**2
        steps = -(-frame_counts // self.config.tubelet)
        step_of_token = torch.arange(tokens, device=frame_counts.device) // per_step
        return (step_of_token[None, :] < steps[:, None])[:, None, None, :]

    # ------------------------------------------------------------------ the text
    def decode(
        self,
        tokens: torch.Tensor,
        video: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        cache: list | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Logits ``(B, L, vocab)`` for ``tokens`` at positions ``start...``, attending to ``video``."""
        if start + tokens.shape[1] > self.config.max_tokens:
            raise InvalidInputError(
                f"Captions are limited to {self.config.max_tokens} tokens, got {start + tokens.shape[1]}."
            )
        h = self.token_embed(tokens) + self.token_pos[start : start + tokens.shape[1]]
        for i, block in enumerate(self.blocks):
            h = block(h, video, video_mask, None if cache is None else cache[i])
        return self.norm(h) @ self.token_embed.weight.T  # tied input and output embeddings

    def forward(
        self,
        pixels: torch.Tensor,
        tokens: torch.Tensor,
        frame_counts: torch.Tensor | None = None,
        length_groups: int = 1,
        with_video: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, L, vocab)``.

        ``length_groups > 1`` decodes rows in that many groups of similar caption length
        (padding is ``pad_id``), each only as long as its longest caption, and leaves zeros
        past that: training batches mix captions of 20 and 200 tokens, and padding would
        otherwise be most of the decoder's work.
        ``with_video`` also returns the video tokens (for losses on them in training).
        """
        video = self.encode(pixels, frame_counts)
        mask = self.video_mask(frame_counts, video.shape[1])
        if length_groups <= 1:
            logits = self.decode(tokens, video, mask)
        else:
            lengths = (tokens != self.config.pad_id).sum(1)
            logits = tokens.new_zeros((*tokens.shape, self.config.vocab_size), dtype=video.dtype)
            for rows in lengths.argsort().chunk(length_groups):
                n = int(lengths[rows].max())
                part = self.decode(tokens[rows, :n], video[rows], None if mask is None else mask[rows])
                logits[rows, :n] = part.to(logits.dtype)  # under autocast the decoder's linears give bf16
        return (logits, video) if with_video else logits

    @torch.no_grad()
    def generate(
        self, pixels: torch.Tensor, max_tokens: int | None = None, frame_counts: torch.Tensor | None = None
    ) -> list[list[int]]:
        """Greedy decoding: token ids of each caption, without the start and end tokens."""
        c = self.config
        limit = min(max_tokens or c.max_tokens, c.max_tokens)
        video = self.encode(pixels, frame_counts)
        mask = self.video_mask(frame_counts, video.shape[1])
        b = video.shape[0]
        cache: list[dict] = [{} for _ in self.blocks]
        token = torch.full((b, 1), c.eos_id, dtype=torch.long, device=video.device)
        out = torch.empty((b, 0), dtype=torch.long, device=video.device)
        done = torch.zeros(b, dtype=torch.bool, device=video.device)
        for position in range(limit - 1):
            logits = self.decode(token, video, mask, cache, start=position)
            token = logits[:, -1].argmax(-1, keepdim=True)
            token[done] = c.pad_id
            out = torch.cat([out, token], dim=1)
            done |= token[:, 0] == c.eos_id
            if bool(done.all()):
                break
        return [[t for t in row.tolist() if t not in (c.pad_id, c.eos_id)] for row in out]

    def caption(self, pixels: torch.Tensor, max_tokens: int | None = None) -> list[str]:
        """Captions of a batch of videos (needs the attached tokenizer)."""
        if self.tokenizer is None:
            raise CheckpointError(
                "This captioner has no tokenizer attached; load it with Captioner.from_pretrained(dir)."
            )
        return [self.tokenizer.decode(ids) for ids in self.generate(pixels, max_tokens)]

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        directory = super().save_pretrained(directory, dtype)
        if self.tokenizer is not None:
            self.tokenizer.save(directory / TOKENIZER_NAME)
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> Captioner:
        from kinetoscope.text.tokenizer import CaptionTokenizer

        model = super().from_pretrained(directory, device, dtype)
        path = Path(directory) / TOKENIZER_NAME
        if not path.is_file():
            raise CheckpointError(f"{directory} is not a Captioner directory: {TOKENIZER_NAME} is missing.")
        model.tokenizer = CaptionTokenizer.load(path)
        return model


class Stem(nn.Module):
    """Tubelets ``(N, tubelet, 3, S, S)`` -> token grid ``(N, (S / patch) ** 2, dim)``.

    Each frame goes through the same two convolutions (``patch`` wide with half its stride,
    then 3x3 with stride 2): edges and corners, learned once for every frame.
    A token then joins its cell's features of every frame of the tubelet, so where what is in
    the cell goes (its motion) is in the token's own content rather than only in a comparison
    across tokens, which a small model learns far more slowly.
    With ``context`` cells, a :class:`FrameContext` first mixes each frame's features over that
    neighbourhood: an object moving a cell every two frames has left its frame-0 cell by frame
    2, and the token of that cell should still see the rest of its path, which is what its
    heading is read from.
    """

    def __init__(self, tubelet: int, hidden: int, dim: int, patch: int, context: int = 0):
        super().__init__()
        self.frame = nn.Sequential(
            nn.Conv2d(3, hidden, patch, stride=patch // 2, padding=patch // 4),
            nn.GELU(),
            nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1),
            nn.GELU(),
        )
        if context:
            self.frame.append(FrameContext(2 * hidden, context))
        self.join = nn.Linear(tubelet * 2 * hidden, dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.join.weight.dtype

    def forward(self, tubes: torch.Tensor) -> torch.Tensor:
        n, k, c, s, _ = tubes.shape
        features = self.frame(tubes.reshape(n * k, c, s, s).to(self.dtype))  # (n * k, ch, g, g)
        features = features.reshape(n, k, -1, features.shape[-1] ** 2).permute(0, 3, 1, 2)  # (n, cells, k, ch)
        return self.join(features.flatten(2))


class FrameContext(nn.Module):
    """``x + W2 GELU(W1 depthwise_k(x))`` over a ``(N, C, g, g)`` grid, as in a ConvNeXt block.

    The output layer starts at zero, so adding this to a trained stem (``init_from``) leaves
    what the model computes unchanged until training finds a use for it.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.spatial = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.mix = nn.Sequential(nn.Conv2d(channels, 2 * channels, 1), nn.GELU(), nn.Conv2d(2 * channels, channels, 1))
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.spatial(x))


def square_frames(pixels: torch.Tensor, size: int, frames: int) -> torch.Tensor:
    """``(..., 3, T, H, W)`` -> the first ``frames`` frames resized to ``size x size`` (aspect ratio not kept)."""
    x = pixels[..., :frames, :, :]
    *lead, c, t, h, w = x.shape
    if (h, w) == (size, size):
        return x
    flat = x.reshape(-1, c, t, h, w).transpose(1, 2).reshape(-1, c, h, w)
    flat = F.interpolate(flat.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return flat.clamp(-1.0, 1.0).reshape(-1, t, c, size, size).transpose(1, 2).reshape(*lead, c, t, size, size)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
