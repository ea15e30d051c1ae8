"""Attention over packed sequences: each sample attends only to itself, with no padding.

``packed_attention(q, k, v, q_lens, kv_lens)`` takes queries ``(Nq, heads, head_dim)`` and keys /
values ``(Nk, heads, head_dim)`` cut into consecutive segments; segment i of the queries sees
only segment i of the keys (self-attention: the same lengths; cross-attention to text: each
sample's own text tokens). Every backend computes exactly the same thing:

- ``"flash"``: flash-attn's varlen kernel (CUDA, fp16/bf16, when flash-attn is installed);
- ``"flex"``: flex_attention with a block-diagonal block mask (CUDA; on the CPU it runs
  forward-only, which the tests use to check the mask);
- ``"sdpa"``: scaled_dot_product_attention per group of equal-shape segments (the CPU path;
  a single segment costs exactly one call). Under CPU autocast, small segments that need gradients run
  in fp32 (see ``_CPU_BF16_MIN_SCORES``), the rest in autocast's dtype as usual.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kinetoscope.devices import autocast_dtype
from kinetoscope.errors import InvalidInputError

BACKENDS = ("sdpa", "flex", "flash")


def packed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_lens: Sequence[int],
    kv_lens: Sequence[int] | None = None,
    backend: str | None = None,
) -> Tensor:
    """Attention of each query segment to its own key/value segment; returns ``(Nq, heads, head_dim)``.

    A segment with no keys (a sample without text tokens) attends to nothing and gets zeros.
    """
    kv_lens = q_lens if kv_lens is None else kv_lens
    if len(q_lens) != len(kv_lens) or sum(q_lens) != q.shape[0] or sum(kv_lens) != k.shape[0]:
        raise InvalidInputError(
            f"Segments do not match the tensors: {len(q_lens)} query segments summing to {sum(q_lens)} for "
            f"{q.shape[0]} queries, {len(kv_lens)} key segments summing to {sum(kv_lens)} for {k.shape[0]} keys."
        )
    backend = backend or default_backend(q)
    if backend == "sdpa":
        return _sdpa_segments(q, k, v, q_lens, kv_lens)
    if backend == "flex":
        return _flex(q, k, v, tuple(q_lens), tuple(kv_lens))
    if backend == "flash":
        return _flash_varlen(q, k, v, q_lens, kv_lens)
    raise InvalidInputError(f"Unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}.")


def default_backend(q: Tensor) -> str:
    if not q.is_cuda:
        return "sdpa"
    if q.dtype in (torch.float16, torch.bfloat16) and _flash_attn() is not None:
        return "flash"
    return "flex"


def _heads_first(x: Tensor) -> Tensor:
    """``(N, heads, head_dim)`` -> ``(1, heads, N, head_dim)``, a view."""
    return x.transpose(0, 1).unsqueeze(0)


def _tokens_first(x: Tensor) -> Tensor:
    """The inverse of :func:`_heads_first`, also a view. (Not ``x[0]``: its backward would copy
    the gradient into a new zero tensor of another memory layout than the attention output's.)"""
    return x.squeeze(0).transpose(0, 1)


# On the CPU, torch's bf16 flash-attention backward costs 1-3 ms a call whatever its size (torch
# 2.13, one core of an AMX Xeon): below this many scores per head (query x key tokens) fp32 runs
# forward + backward faster, 3-6x so for clips of ~100 tokens and their text.
_CPU_BF16_MIN_SCORES = 256 * 256


def _sdpa_segments(q: Tensor, k: Tensor, v: Tensor, q_lens: Sequence[int], kv_lens: Sequence[int]) -> Tensor:
    """Segments of equal shape share one batched call: a batch of clips of one size and duration
    costs one kernel launch per block instead of one per clip (2.5x faster for 16 clips of 80 tokens)."""
    small = _small_under_cpu_autocast(q, k, v, q_lens, kv_lens)
    segments = _split(q, k, v, q_lens, kv_lens)
    # Cast once, not segment by segment: hundreds of small casts cost about what fp32 saves.
    wide = _split(q.float(), k.float(), v.float(), q_lens, kv_lens) if any(small) else segments
    groups: dict[tuple[int, int, bool], list[int]] = {}
    for i, key in enumerate(zip(q_lens, kv_lens, small)):
        groups.setdefault(key, []).append(i)
    outputs: list[Tensor | None] = [None] * len(segments)
    for (_, _, is_small), members in groups.items():
        chosen = [wide[i] if is_small else segments[i] for i in members]
        with torch.autocast("cpu", enabled=False) if is_small else contextlib.nullcontext():
            for i, out in zip(members, _attend_batch(chosen)):
                outputs[i] = out
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    # Autocast's output dtype, whichever way each segment ran.
    return out.to(torch.get_autocast_dtype("cpu")) if any(small) else out


def _attend_batch(segments: list[tuple[Tensor, Tensor, Tensor]]) -> list[Tensor]:
    """Attention of segments that all have the same query and key lengths, in one call."""
    if len(segments) == 1:
        return [_attend(*segments[0])]
    q, k, v = (torch.stack(parts).transpose(1, 2) for parts in zip(*segments))  # (B, heads, n, head_dim)
    if k.shape[2] == 0:
        return [_attend(*segment) for segment in segments]
    return list(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).unbind(0))


def _small_under_cpu_autocast(
    q: Tensor, k: Tensor, v: Tensor, q_lens: Sequence[int], kv_lens: Sequence[int]
) -> list[bool]:
    """Which segments to run in fp32 (see ``_CPU_BF16_MIN_SCORES``): only under CPU autocast, with gradients."""
    autocast = q.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    backward = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    return [autocast and backward and m * n < _CPU_BF16_MIN_SCORES for m, n in zip(q_lens, kv_lens)]


def _split(q: Tensor, k: Tensor, v: Tensor, q_lens: Sequence[int], kv_lens: Sequence[int]) -> list:
    return list(zip(q.split(list(q_lens)), k.split(list(kv_lens)), v.split(list(kv_lens))))


def _attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of one segment, ``(n, heads, head_dim)``; zeros when it has no keys."""
    if k.shape[0] == 0:  # zeros in the dtype attention would give, which under autocast is not q's
        return torch.zeros_like(q, dtype=autocast_dtype(q.device.type))
    return _tokens_first(F.scaled_dot_product_attention(_heads_first(q), _heads_first(k), _heads_first(v)))


@functools.lru_cache(maxsize=16)
def _block_mask(q_lens: tuple[int, ...], kv_lens: tuple[int, ...], device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    def segment_ids(lens: tuple[int, ...]) -> Tensor:
        return torch.repeat_interleave(torch.arange(len(lens), device=device), torch.tensor(lens, device=device))

    q_ids, kv_ids = segment_ids(q_lens), segment_ids(kv_lens)

    def same_segment(batch, head, q_idx, kv_idx):
        return q_ids[q_idx] == kv_ids[kv_idx]

    # Compiled mask building avoids materialising the full Nq x Nk mask on the GPU.
    return create_block_mask(
        same_segment, None, None, sum(q_lens), sum(kv_lens), device=device, _compile=device.type == "cuda"
    )


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


def _flex(q: Tensor, k: Tensor, v: Tensor, q_lens: tuple[int, ...], kv_lens: tuple[int, ...]) -> Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    attend = _compiled_flex() if q.is_cuda else flex_attention
    mask = _block_mask(q_lens, kv_lens, q.device)
    return _tokens_first(attend(_heads_first(q), _heads_first(k), _heads_first(v), block_mask=mask))


@functools.cache
def _flash_attn():
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def _flash_varlen(q: Tensor, k: Tensor, v: Tensor, q_lens: Sequence[int], kv_lens: Sequence[int]) -> Tensor:
    attend = _flash_attn()
    if attend is None:
        raise InvalidInputError("The 'flash' attention backend needs flash-attn installed (pip install flash-attn).")

    def cumulative(lens: Sequence[int]) -> Tensor:
        return torch.tensor([0, *lens], device=q.device).cumsum(0, dtype=torch.int32)

    return attend(q, k, v, cumulative(q_lens), cumulative(kv_lens), max(q_lens), max(kv_lens))
