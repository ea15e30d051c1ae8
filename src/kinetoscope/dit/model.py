"""The diffusion transformer: packed spacetime tokens in, rectified-flow velocity out.

Shaped after Wan2.1's model.py: a linear patch embedding, a sinusoidal time embedding with
one shared projection to six modulation vectors (each block adds its own learned offsets),
blocks of self-attention with QK RMS norm and 3D RoPE, cross-attention to the text, and a
GELU-tanh feed-forward, then a modulated output head. Two things differ from Wan:

- Tokens are packed (see ``patches.py``): a batch of different sizes is one sequence and
  attention never crosses samples. Time is given per token, so frames given as conditions
  carry t = 0 while the rest are noisy; modulation is looked up per token.
- adaLN-Zero: modulation offsets, the shared time projection and the output projection
  start at zero, so every block starts as the identity and the output starts at zero.

``DiTConfig.text_len`` switches the one difference weights cannot express back to Wan's:
prompts padded with zeros that the cross-attention reads (:mod:`kinetoscope.wan` imports
Wan2.1 checkpoints with it on).

With ``text_attention="joint"`` a block is MMDiT's instead: text tokens join their sample's
sequence and carry their own weights (modulation, projections, feed-forward).

The code below is plain torch modules. Where ``ops.fused()`` (the switch in ``ops.py``), a step
hands the same parameters to a fused op of ``ops.py`` instead, which computes the same function
keeping less memory for the backward pass; the plain lines after it are what it computes.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kinetoscope.dit import ops
from kinetoscope.dit.attention import packed_attention
from kinetoscope.dit.config import DiTConfig
from kinetoscope.dit.ops import Linear
from kinetoscope.dit.patches import PackedBatch
from kinetoscope.dit.rope import apply_rope, rope_frequencies
from kinetoscope.errors import InvalidInputError
from kinetoscope.modeling import PretrainedModel


@dataclasses.dataclass
class Packing:
    """What every block needs to know about the batch, computed once per forward pass."""

    seq_lens: Sequence[int]  # video tokens per sample
    text_lens: Sequence[int]  # valid text tokens per sample
    freqs: Tensor  # RoPE rotations per video token
    index: Tensor | None  # modulation row of each video token (None: one row for all)
    text_index: Tensor | None  # modulation row of each text token (joint attention)
    joint_order: Tensor | None  # cat(text, video)[joint_order] puts each sample's text before its video

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keys: str = "video") -> Tensor:
        """Each sample's queries attend to its own ``keys``: its video tokens, its text tokens, or
        both (``"joint"``: text then video per sample)."""
        if torch.compiler.is_compiling():
            return _attend_outside_graphs()(self, q, k, v, keys)
        return _attend(self, q, k, v, keys)


def _attend(packing: Packing, q: Tensor, k: Tensor, v: Tensor, keys: str) -> Tensor:
    if keys == "joint":
        return packed_attention(q, k, v, [a + b for a, b in zip(packing.text_lens, packing.seq_lens)])
    return packed_attention(q, k, v, packing.seq_lens, packing.text_lens if keys == "text" else None)


@functools.cache
def _attend_outside_graphs() -> Callable[..., Tensor]:
    """:func:`_attend` outside any compiled graph (``compile: true`` compiles block by block): how a
    batch is cut into samples changes every step, and a graph traced through the cuts would be
    specialised on, and recompiled for, each packing. Made on first use: importing dynamo costs
    every process that never compiles most of a second."""
    return torch.compiler.disable(_attend)


def modulate(x: Tensor, shift: Tensor, scale: Tensor, index: Tensor | None) -> Tensor:
    """adaLN: ``x * (1 + scale) + shift``, each token taking its row ``index`` of the ``(U, D)`` tables."""
    return x * (1 + ops.rows(scale, index)) + ops.rows(shift, index)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor, index: Tensor | None) -> Tensor:
    """``x + y * gate``, each token taking its row of the gate table."""
    if ops.fused():
        return ops.gated_residual(x, y, gate, index)
    return x + y * ops.rows(gate, index)


def rms_norm_heads(x: Tensor, weight: Tensor, freqs: Tensor | None, eps: float) -> Tensor:
    """RMS norm of ``x`` ``(N, heads, head_dim)`` across all heads, then RoPE if ``freqs``.

    In fp32 at least, returned in ``x``'s dtype: under autocast the norm runs in fp32 and
    attention gets bf16, as in the fused op.
    """
    normed = F.rms_norm(x.float().flatten(1), (weight.shape[-1],), weight.float(), eps).view(x.shape)
    return (normed if freqs is None else apply_rope(normed, freqs)).to(x.dtype)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``1000 t`` (cos first, as Wan) through a two-layer MLP."""

    def __init__(self, freq_dim: int, width: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(Linear(freq_dim, width), nn.SiLU(), Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = 1000.0 * t.float()[:, None] * freqs
        features = torch.cat([angles.cos(), angles.sin()], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class Stream(nn.Module):
    """One token stream of a block: modulated self-attention projections and feed-forward.

    A cross-attention block has one stream (video); a joint block has two (video and text).
    ``modulation`` holds this block's offsets to the shared time projection: shift, scale and
    gate for attention, then for the feed-forward. A stream that only feeds keys and values
    to the others (text in the last joint block) has no output layers.
    """

    def __init__(self, config: DiTConfig, output: bool = True):
        super().__init__()
        width = config.width
        self.heads, self.eps = config.heads, config.eps
        self.modulation = nn.Parameter(torch.zeros(6 if output else 2, width))
        self.norm = nn.LayerNorm(width, eps=config.eps, elementwise_affine=False)  # no weights: modulation scales
        self.qkv = Linear(width, 3 * width)
        self.qk_norm = nn.Parameter(torch.ones(2, width))
        if output:
            self.out = Linear(width, width)
            self.ffn = nn.Sequential(Linear(width, config.ffn_dim), nn.GELU("tanh"), Linear(config.ffn_dim, width))

    def attention_inputs(
        self, x: Tensor, time_mod: Tensor, index: Tensor | None, freqs: Tensor | None
    ) -> tuple[Tensor, ...]:
        """Queries, keys, values ``(N, heads, head_dim)`` of the modulated norm of ``x``."""
        shift, scale = (time_mod[:, :2] + self.modulation[:2]).unbind(1)
        if ops.fused():
            qkv = ops.norm_linear(x, 1 + scale, shift, index, self.qkv.weight, self.qkv.bias, self.eps)
            return ops.normalize_heads(qkv.unflatten(1, (3, self.heads, -1)), self.qk_norm, freqs, self.eps)
        qkv = self.qkv(modulate(self.norm(x), shift, scale, index))
        q, k, v = qkv.unflatten(1, (3, self.heads, -1)).unbind(1)
        q = rms_norm_heads(q, self.qk_norm[0], freqs, self.eps)
        return q, rms_norm_heads(k, self.qk_norm[1], freqs, self.eps), v

    def attention_residual(self, x: Tensor, attended: Tensor, time_mod: Tensor, index: Tensor | None) -> Tensor:
        gate = time_mod[:, 2] + self.modulation[2]
        return gated_residual(x, self.out(attended.flatten(1)), gate, index)

    def feed_forward_residual(self, x: Tensor, time_mod: Tensor, index: Tensor | None) -> Tensor:
        shift, scale, gate = (time_mod[:, 3:] + self.modulation[3:]).unbind(1)
        if ops.fused():
            fc1, _, fc2 = self.ffn
            y = ops.norm_mlp(x, 1 + scale, shift, index, fc1.weight, fc1.bias, fc2.weight, fc2.bias, self.eps)
        else:
            y = self.ffn(modulate(self.norm(x), shift, scale, index))
        return gated_residual(x, y, gate, index)


class CrossAttention(nn.Module):
    """Each sample's video tokens attend to that sample's text tokens (layer norm, QK RMS norm)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        width = config.width
        self.heads, self.eps = config.heads, config.eps
        self.norm = nn.LayerNorm(width, eps=config.eps)
        self.q = Linear(width, width)
        self.kv = Linear(width, 2 * width)
        self.q_norm = nn.Parameter(torch.ones(1, width))
        self.k_norm = nn.Parameter(torch.ones(1, width))
        self.out = Linear(width, width)

    def forward(self, x: Tensor, text: Tensor, packing: Packing) -> Tensor:
        if ops.fused():
            weight, bias = self.norm.weight[None], self.norm.bias[None]
            q = ops.norm_linear(x, weight, bias, None, self.q.weight, self.q.bias, self.eps)
            (q,) = ops.normalize_heads(q.unflatten(1, (1, self.heads, -1)), self.q_norm, None, self.eps)
            k, v = ops.normalize_heads(self.kv(text).unflatten(1, (2, self.heads, -1)), self.k_norm, None, self.eps)
        else:
            q = rms_norm_heads(self.q(self.norm(x)).unflatten(1, (self.heads, -1)), self.q_norm[0], None, self.eps)
            k, v = self.kv(text).unflatten(1, (2, self.heads, -1)).unbind(1)
            k = rms_norm_heads(k, self.k_norm[0], None, self.eps)
        return self.out(packing.attend(q, k, v, "text").flatten(1))


class CrossBlock(nn.Module):
    """Wan2.1's block: self-attention, cross-attention to the text, feed-forward."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.video = Stream(config)
        self.cross = CrossAttention(config)

    def forward(self, x: Tensor, text: Tensor, time_mod: Tensor, packing: Packing) -> tuple[Tensor, Tensor]:
        q, k, v = self.video.attention_inputs(x, time_mod, packing.index, packing.freqs)
        x = self.video.attention_residual(x, packing.attend(q, k, v), time_mod, packing.index)
        x = x + self.cross(x, text, packing)
        return self.video.feed_forward_residual(x, time_mod, packing.index), text


class JointBlock(nn.Module):
    """MMDiT's block: one attention over each sample's text and video tokens, separate weights."""

    def __init__(self, config: DiTConfig, text_output: bool):
        super().__init__()
        self.video = Stream(config)
        self.text = Stream(config, output=text_output)

    def forward(self, x: Tensor, text: Tensor, time_mod: Tensor, packing: Packing) -> tuple[Tensor, Tensor]:
        video_qkv = self.video.attention_inputs(x, time_mod, packing.index, packing.freqs)
        text_qkv = self.text.attention_inputs(text, time_mod, packing.text_index, None)
        order = packing.joint_order
        q, k, v = (torch.cat([t, s])[order] for t, s in zip(text_qkv, video_qkv))
        attended = packing.attend(q, k, v, "joint")  # under autocast, not necessarily in q's dtype
        attended = torch.empty_like(q, dtype=attended.dtype).index_copy_(0, order, attended)
        text_attended, video_attended = attended.split([text.shape[0], x.shape[0]])
        x = self.video.attention_residual(x, video_attended, time_mod, packing.index)
        x = self.video.feed_forward_residual(x, time_mod, packing.index)
        if hasattr(self.text, "out"):
            text = self.text.attention_residual(text, text_attended, time_mod, packing.text_index)
            text = self.text.feed_forward_residual(text, time_mod, packing.text_index)
        return x, text


class Head(nn.Module):
    """Final modulated layer norm and projection back to patch features (zero at init)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.eps = config.eps
        self.modulation = nn.Parameter(torch.zeros(2, config.width))
        self.norm = nn.LayerNorm(config.width, eps=config.eps, elementwise_affine=False)
        self.proj = Linear(config.width, config.patch_dim)

    def forward(self, x: Tensor, temb: Tensor, index: Tensor | None) -> Tensor:
        shift, scale = (temb[:, None] + self.modulation).unbind(1)
        if ops.fused():
            return ops.norm_linear(x, 1 + scale, shift, index, self.proj.weight, self.proj.bias, self.eps)
        return self.proj(modulate(self.norm(x), shift, scale, index))


class FramePosition(nn.Module):
    """Each token's place in its own frame, as a fraction of the frame's height and width (so the same
    for any size or aspect ratio), in Fourier features projected to the model's width. The projection
    starts at zero, so adding it to a trained model leaves what it computes unchanged."""

    FREQUENCIES = 6

    def __init__(self, width: int):
        super().__init__()
        self.proj = Linear(4 * self.FREQUENCIES, width)

    def forward(self, batch: PackedBatch) -> Tensor:
        positions = batch.positions
        sizes = torch.tensor([grid[1:] for grid in batch.grids], device=positions.device, dtype=torch.float32)
        sizes = sizes.repeat_interleave(torch.tensor(batch.seq_lens, device=positions.device), dim=0)
        fractions = (positions[:, 1:].float() + 0.5) / sizes  # (N, 2): row and column in (0, 1)
        scales = math.pi * 2.0 ** torch.arange(self.FREQUENCIES, device=positions.device, dtype=torch.float32)
        angles = (fractions[..., None] * scales).flatten(1)
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=1).to(self.proj.weight.dtype))


class DiT(PretrainedModel):
    """Rectified-flow diffusion transformer over packed spacetime patches.

    ``forward(batch, t, text, text_mask)``: ``batch.tokens`` ``(N, patch_dim)`` are the noisy
    latent patches, ``t`` ``(N,)`` each token's time in [0, 1], ``text`` ``(B, L, text_dim)`` with
    ``text_mask`` ``(B, L)`` bool marking real tokens. Returns the velocity ``(N, patch_dim)``.
    """

    config_class = DiTConfig

    def __init__(self, config: DiTConfig):
        super().__init__(config)
        width = config.width
        self.patch_embed = Linear(config.patch_dim, width)
        self.text_embed = nn.Sequential(Linear(config.text_dim, width), nn.GELU("tanh"), Linear(width, width))
        self.time_embed = TimeEmbedding(config.freq_dim, width)
        self.time_modulation = nn.Sequential(nn.SiLU(), Linear(width, 6 * width))
        if config.text_attention == "cross":
            self.blocks = nn.ModuleList(CrossBlock(config) for _ in range(config.depth))
        else:
            self.blocks = nn.ModuleList(JointBlock(config, i < config.depth - 1) for i in range(config.depth))
        self.head = Head(config)
        self.frame_embed = FramePosition(width) if config.frame_position else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier linears with zero biases; adaLN-Zero: modulation and output start at zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for module in (self.text_embed, self.time_embed.mlp):
            for layer in module:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, std=0.02)
        for name, param in self.named_parameters():
            if name.endswith("modulation"):
                nn.init.zeros_(param)
        zeroed = (self.time_modulation[1], self.head.proj) + ((self.frame_embed.proj,) if self.frame_embed is not None else ())
        for layer in zeroed:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, batch: PackedBatch, t: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        self._check_inputs(batch, t, text, text_mask)
        times, index = _time_rows(t)
        temb = self.time_embed(times)
        time_mod = self.time_modulation(temb).unflatten(1, (6, -1))
        text_mask = text_mask.to(torch.bool)
        # Under autocast the products run in bf16 but the residual streams stay in the parameters' dtype.
        dtype = self.patch_embed.weight.dtype
        text_tokens = self.text_embed(text[text_mask]).to(dtype)
        text_lens = text_mask.sum(1).tolist()
        if self.config.text_len:
            text_tokens, text_lens = self._pad_text(text, text_tokens, text_lens)
        packing = Packing(
            seq_lens=batch.seq_lens,
            text_lens=text_lens,
            freqs=rope_frequencies(
                batch.positions, self.config.head_dim, self.config.rope_theta, self.config.position_scale
            ),
            index=index,
            text_index=None,
            joint_order=None,
        )
        if self.config.text_attention == "joint":
            packing.text_index = _text_rows(t, times, index, batch.seq_lens, text_lens)
            packing.joint_order = _joint_order(text_lens, batch.seq_lens, t.device)
        x = self.patch_embed(batch.tokens).to(dtype)
        if self.frame_embed is not None:
            x = x + self.frame_embed(batch).to(dtype)
        for block in self.blocks:
            x, text_tokens = block(x, text_tokens, time_mod, packing)
        return self.head(x, temb, index)

    def _pad_text(self, text: Tensor, tokens: Tensor, lens: list[int]) -> tuple[Tensor, list[int]]:
        """Wan's text input: each sample's tokens, then the embedding of a zero vector up to ``text_len``."""
        pad = self.text_embed(text.new_zeros(1, text.shape[-1])).to(tokens.dtype)
        length = self.config.text_len
        pieces = []
        for part, n in zip(tokens.split(lens), lens):
            pieces += [part, pad.expand(max(0, length - n), -1)]
        return torch.cat(pieces), [max(n, length) for n in lens]

    def _check_inputs(self, batch: PackedBatch, t: Tensor, text: Tensor, text_mask: Tensor) -> None:
        n, features = batch.tokens.shape
        config = self.config
        if features != config.patch_dim or tuple(batch.patch_size) != tuple(config.patch_size):
            raise InvalidInputError(
                f"Tokens have {features} features with patch size {batch.patch_size}; this model takes "
                f"{config.patch_dim} ({config.in_channels} channels, patch size {config.patch_size})."
            )
        if t.shape != (n,):
            raise InvalidInputError(f"Time must have one value per token, shape ({n},); got {tuple(t.shape)}.")
        batch_size = len(batch.grids)
        if text.ndim != 3 or text.shape[0] != batch_size or text.shape[2] != config.text_dim:
            raise InvalidInputError(
                f"Text embeddings must have shape ({batch_size}, L, {config.text_dim}); got {tuple(text.shape)}."
            )
        if text_mask.shape != text.shape[:2]:
            raise InvalidInputError(
                f"The text mask must have shape {tuple(text.shape[:2])}; got {tuple(text_mask.shape)}."
            )


def _time_rows(t: Tensor) -> tuple[Tensor, Tensor | None]:
    """Distinct times (modulation is computed once per time) and each token's row; None if only one."""
    times, index = torch.unique(t, return_inverse=True)
    return times, (None if len(times) == 1 else index)


def _text_rows(
    t: Tensor, times: Tensor, index: Tensor | None, seq_lens: Sequence[int], text_lens: Sequence[int]
) -> Tensor | None:
    """Text tokens take their sample's noise level: the largest time among its video tokens."""
    if index is None:
        return None
    samples = torch.repeat_interleave(
        torch.arange(len(seq_lens), device=t.device), torch.tensor(seq_lens, device=t.device)
    )
    sample_rows = torch.zeros(len(seq_lens), dtype=index.dtype, device=t.device).scatter_reduce_(
        0, samples, index, reduce="amax", include_self=False
    )
    return torch.repeat_interleave(sample_rows, torch.tensor(text_lens, device=t.device))


def _joint_order(text_lens: Sequence[int], seq_lens: Sequence[int], device: torch.device) -> Tensor:
    """Indices into ``cat(text, video)`` that give ``[text_0, video_0, text_1, video_1, ...]``."""
    text_starts = itertools.accumulate(text_lens, initial=0)
    video_starts = itertools.accumulate(seq_lens, initial=sum(text_lens))
    pieces = []
    for m, n, text_start, video_start in zip(text_lens, seq_lens, text_starts, video_starts):
        pieces += [torch.arange(text_start, text_start + m), torch.arange(video_start, video_start + n)]
    return torch.cat(pieces).to(device)
