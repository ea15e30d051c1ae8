"""Causal 3D building blocks. Every temporal operation sees only the past, so a video can be
processed in time chunks with a small cache of the previous chunk's frames and give exactly
the one-shot result.

Activations live in ``torch.channels_last_3d``: oneDNN convolves that layout without
reordering, and the per-position channel norm reads contiguous memory. Under ``no_grad``
activations are written in place into preallocated buffers (in-place ops would break
autograd, so training takes the plain path), so a residual block holds about three
chunk-sized tensors at its peak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kinetoscope.devices import autocast_dtype

CHANNELS_LAST = torch.channels_last_3d


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)


def _fast_path(x: torch.Tensor) -> bool:
    if x.device.type != "cpu" or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_operands(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    """``x``, ``weight`` and ``bias`` in the dtype autocast would convolve them in.

    Autocast casts ``F.conv3d``'s operands but not the oneDNN call of the fast path, which
    would otherwise run in float32 under bf16 autocast.
    """
    dtype = autocast_dtype(x.device.type)
    if dtype is None or x.dtype != torch.float32:
        return x, weight, bias
    return x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding) -> torch.Tensor:
    """``F.conv3d``, but straight to oneDNN for CPU float32.

    PyTorch's heuristic sends batch-1 3D convolutions with ``C*T*H <= 20480`` (a single frame,
    a 64x64 level) to an im2col path that is several times slower and, at wide levels, needs
    an unfolded copy of the input 27 times its size.
    """
    if _fast_path(x):
        return torch.mkldnn_convolution(x, weight, bias, padding, stride, (1, 1, 1), 1)
    return F.conv3d(x, weight, bias, stride, padding)


def winograd_time_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding) -> torch.Tensor:
    """A 3-frame, stride-1 kernel over time as Winograd F(2, 3): each pair of output frames
    takes four spatial convolutions of transformed frames instead of six (a third fewer
    FLOPs; agrees with the direct convolution to ~1e-6 relative in float32).

    With input frames d0..d3 and time taps g0..g2 of one output pair::

        m1 = (d0 - d2) * g0          m2 = (d1 + d2) * (g0 + g1 + g2) / 2
        m3 = (d2 - d1) * (g0 - g1 + g2) / 2          m4 = (d1 - d3) * g2
        y0 = m1 + m2 + m3            y1 = m2 - m3 - m4

    where ``*`` is a spatial convolution over channels. An odd last frame is convolved directly.
    """
    b, _, frames, h, w = x.shape
    out_frames = frames - 2
    pairs = out_frames // 2
    g0, g1, g2 = weight[:, :, 0:1], weight[:, :, 1:2], weight[:, :, 2:3]
    # Transformed taps are made when used: at wide levels each is as large as a small input.
    taps = [lambda: g0, lambda: (g0 + g1 + g2) * 0.5, lambda: (g0 - g1 + g2) * 0.5, lambda: g2]
    out = torch.empty((b, weight.shape[0], out_frames, h, w), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
    # Half the pairs at a time: the transformed frames and products then stay a quarter of
    # the output's size, so this needs no more memory than the direct convolution's reorders.
    group = max(1, pairs // 2)
    mixed = torch.empty((b, x.shape[1], group, h, w), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
    for start in range(0, pairs, group):
        n = min(group, pairs - start)
        d = [x[:, :, 2 * start + i : 2 * (start + n) + i : 2] for i in range(4)]
        even = out[:, :, 2 * start : 2 * (start + n) : 2]
        odd = out[:, :, 2 * start + 1 : 2 * (start + n) : 2]
        u = mixed[:, :, :n]

        def product(k: int, first: torch.Tensor, second: torch.Tensor, sign: int, with_bias: bool = False) -> torch.Tensor:
            torch.add(first, second, alpha=sign, out=u)
            tap = taps[k]().contiguous(memory_format=CHANNELS_LAST)
            return conv3d(u, tap, bias if with_bias else None, (1, 1, 1), padding)

        even.copy_(product(0, d[0], d[2], -1))
        m2 = product(1, d[1], d[2], 1, with_bias=True)  # m2 is in both outputs: it carries the bias
        even.add_(m2)
        odd.copy_(m2)
        del m2
        m3 = product(2, d[2], d[1], -1)
        even.add_(m3)
        odd.sub_(m3)
        del m3
        odd.sub_(product(3, d[1], d[3], -1))
    if out_frames % 2:
        out[:, :, out_frames - 1 :] = conv3d(x[:, :, out_frames - 1 :], weight, bias, (1, 1, 1), padding)
    return out


class StreamCache:
    """The input frames each causal layer still needs from earlier chunks.

    Empty before the first chunk (layers then pad the past with zeros, exactly as a one-shot
    pass does). Set ``keep = False`` for the last chunk so nothing is stored needlessly.
    """

    def __init__(self) -> None:
        self._frames: dict[nn.Module, torch.Tensor] = {}
        self._started: set[nn.Module] = set()
        self.keep = True

    def get(self, layer: nn.Module) -> torch.Tensor | None:
        return self._frames.get(layer)

    def started(self, layer: nn.Module) -> bool:
        """Whether ``layer`` has seen a chunk before (the first chunk of a video is special)."""
        return layer in self._started

    def start(self, layer: nn.Module) -> None:
        """Mark ``layer`` as past its first chunk with nothing carried: the next chunk pads zeros."""
        self._started.add(layer)

    def put(self, layer: nn.Module, frames: torch.Tensor) -> None:
        self._started.add(layer)
        if self.keep:
            # A copy, not a view: a view would keep the whole padded chunk alive.
            self._frames[layer] = frames.clone(memory_format=CHANNELS_LAST)


class CausalConv3d(nn.Conv3d):
    """A 3D convolution padded in time only on the past side (zeros before frame 0).

    Spatial padding is symmetric ("same"). A kernel of ``kt`` frames with time stride ``st``
    reads ``kt - 1`` zero frames before the first chunk and carries ``kt - st`` input frames
    from each chunk to the next.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1):
        kernel_size, stride = _triple(kernel_size), _triple(stride)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=(0, kernel_size[1] // 2, kernel_size[2] // 2))
        # Stored in the activations' layout: oneDNN would otherwise copy the weights into it on
        # every call (a transient as large as the weights, at every layer, for every chunk).
        self.weight.data = self.weight.data.contiguous(memory_format=CHANNELS_LAST)
        self.past_frames = kernel_size[0] - 1
        self.carry_frames = kernel_size[0] - stride[0]

    def padded_input(self, x: torch.Tensor, cache: StreamCache | None, norm: "RMSNorm | None" = None) -> torch.Tensor:
        """The kernel's input: the past frames it reads, then ``x`` (or ``silu(norm(x))``).

        Without grad the activation is written straight into one buffer: no temporary and no
        concatenation copy. The cache keeps the last ``carry_frames`` for the next chunk.
        """
        past = cache.get(self) if cache is not None else None
        # Zeros before frame 0; later, the frames carried over (fewer for a strided kernel).
        p = self.past_frames if past is None else past.shape[2]
        if torch.is_grad_enabled():
            if norm is not None:
                x = F.silu(norm(x))
            if p == 0:
                return x
            if past is None:
                past = x.new_zeros((x.shape[0], x.shape[1], p, *x.shape[3:]))
            buffer = torch.cat([past, x], dim=2)
        elif p == 0 and norm is None:
            return x
        else:
            b, c, t, h, w = x.shape
            buffer = torch.empty((b, c, p + t, h, w), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
            if p:
                buffer[:, :, :p] = 0.0 if past is None else past
            if norm is None:
                buffer[:, :, p:] = x
            else:
                F.silu(norm(x, out=buffer[:, :, p:]), inplace=True)
        if cache is not None and self.carry_frames:
            cache.put(self, buffer[:, :, buffer.shape[2] - self.carry_frames :])
        return buffer

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve an input whose past frames are already in front (no time padding)."""
        x, weight, bias = autocast_operands(x, self.weight, self.bias)
        if self.kernel_size[0] == 3 and self.stride[0] == 1 and x.shape[2] >= 4 and _fast_path(x) and not torch.is_grad_enabled():
            return winograd_time_conv3d(x, weight, bias, self.padding)
        return conv3d(x, weight, bias, self.stride, self.padding)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        return self.convolve(self.padded_input(x, cache))


class RMSNorm(nn.Module):
    """Normalise each position over channels. No statistic spans frames or pixels, so time
    chunks and spatial tiles see exactly what a whole-video pass sees."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # vector_norm reduces without materialising x**2 (a full-size temporary).
        mean_square = torch.linalg.vector_norm(x, dim=1, keepdim=True).square() / x.shape[1]
        scale = torch.rsqrt(mean_square + self.eps)
        weight = self.weight.view(1, -1, 1, 1, 1)
        if out is None:
            return x * scale * weight
        return torch.mul(x, scale, out=out).mul_(weight)


class ResBlock(nn.Module):
    """Pre-activation residual block: (RMSNorm, SiLU, causal 3x3x3 conv) twice, plus a shortcut.

    Written as single steps, each rebinding ``h``, so that at most three chunk-sized tensors
    are alive at once: the block input, one padded buffer and one conv output.
    """

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = RMSNorm(in_channels, eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = RMSNorm(out_channels, eps)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        h = self.conv1.padded_input(x, cache, self.norm1)
        h = self.conv1.convolve(h)
        h = self.conv2.padded_input(h, cache, self.norm2)
        h = self.conv2.convolve(h)
        skip = x if self.shortcut is None else self.shortcut(x)
        return h + skip if torch.is_grad_enabled() else h.add_(skip)


class FrameAttention(nn.Module):
    """Single-head self-attention among the positions of each frame. It never looks across
    time, so it keeps the model causal."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = RMSNorm(channels, eps)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        # Channels-last storage makes this permute + reshape free.
        tokens = self.norm(x).permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, c)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        out = self.proj(F.scaled_dot_product_attention(q, k, v))
        out = out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)
        return out + x if torch.is_grad_enabled() else out.add_(x)


class Head(nn.Module):
    """RMSNorm, SiLU and a causal 3x3x3 conv: the last layer of the encoder and the decoder."""

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = RMSNorm(in_channels, eps)
        self.conv = CausalConv3d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        return self.conv.convolve(self.conv.padded_input(x, cache, self.norm))


class Downsample(nn.Module):
    """Halve height and width (3x3 conv, stride 2) and/or time (causal 3-frame conv, stride 2).

    With ``1 + 2k`` input frames the time conv gives ``1 + k``: output 0 reads only frame 0
    (and zero padding), output i reads frames ``2i-2 .. 2i``. ``wan=True`` (``VAEConfig.resample``):
    output 0 is frame 0 itself, and the spatial conv pads only the bottom and right, as Wan's.
    """

    def __init__(self, channels: int, spatial: bool, temporal: bool, wan: bool = False):
        super().__init__()
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3), stride=(1, 2, 2)) if spatial else None
        self.temporal = CausalConv3d(channels, channels, (3, 1, 1), stride=(2, 1, 1)) if temporal else None
        self.wan = wan
        if wan and self.spatial is not None:
            self.spatial.padding = (0, 0, 0)  # padded by hand in forward, on one side

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        if self.spatial is not None:
            x = self.spatial(F.pad(x, (0, 1, 0, 1)) if self.wan else x)
        if self.temporal is not None:
            first_chunk = cache is None or not cache.started(self.temporal)
            y = self.temporal(x, cache)
            x = torch.cat([x[:, :, :1], y[:, :, 1:]], dim=2) if self.wan and first_chunk else y
        return x


class Upsample(nn.Module):
    """Double time (a causal conv makes two frames from each; the very first frame of a video
    gives one) and/or space (nearest, then a 3x3 conv), leaving ``out_channels``.

    ``1 + k`` frames become ``1 + 2k``, the inverse of :class:`Downsample`. ``wan=True``
    (``VAEConfig.resample``): frame 0 passes unchanged, and the time conv's history starts at
    frame 1 (zeros before it), as in Wan's VAE.
    """

    def __init__(self, channels: int, out_channels: int, spatial: bool, temporal: bool, wan: bool = False):
        super().__init__()
        self.time_conv = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None
        self.spatial = spatial
        self.conv = CausalConv3d(channels, out_channels, (1, 3, 3))
        self.wan = wan

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        if self.time_conv is not None and self.wan:
            x = self._wan_time(x, cache)
        elif self.time_conv is not None:
            first_chunk = cache is None or not cache.started(self.time_conv)
            x = _interleave_frames(self.time_conv(x, cache))
            if first_chunk:
                x = x[:, :, 1:]
        if self.spatial:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(x)

    def _wan_time(self, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
        if cache is not None and cache.started(self.time_conv):
            return _interleave_frames(self.time_conv(x, cache))
        first, rest = x[:, :, :1], x[:, :, 1:]
        if cache is not None:
            cache.start(self.time_conv)  # frame 0 is not part of the conv's history
        if not rest.shape[2]:
            return first
        return torch.cat([first, _interleave_frames(self.time_conv(rest, cache))], dim=2)


def _interleave_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, 2C, T, H, W) -> (B, C, 2T, H, W): channels [:C] become frame 2t, [C:] frame 2t+1."""
    b, c2, t, h, w = x.shape
    c = c2 // 2
    pairs = x.reshape(b, 2, c, t, h, w).permute(0, 3, 1, 4, 5, 2)  # (B, T, 2, H, W, C)
    return pairs.reshape(b, 2 * t, h, w, c).permute(0, 4, 1, 2, 3)
