"""The transformer's fused steps, with hand-written backward passes that keep little memory.

The model's own code is plain torch modules (``model.py``); these ops are an optional accelerator
that those modules hand their work to when :func:`kernels` is ``"fused"``. One switch picks them,
at run time and for every DiT in the process: :func:`set_kernels` or the :func:`use_kernels`
context, else the environment variable ``KINETOSCOPE_DIT_KERNELS`` (``fused``, the default, or
``plain``). Both compute the same function with the same parameters; it is not saved with a model.

Autograd keeps every intermediate a step needs for its gradient: after a layer norm, its
modulation and a linear layer it holds the normalised, the modulated and the projected
tensors. For the cheap elementwise steps (layer norm + adaLN modulation, GELU, RMS norm +
RoPE) it is cheaper to recompute them in the backward pass than to keep them, so these
functions save only their inputs and recompute the rest. Matrix products are never
recomputed, and nothing here is activation checkpointing: each op redoes at most a few
elementwise passes over tensors it already has.

Per-token adaLN: modulation comes as small tables ``(U, D)`` (one row per distinct time in the
batch) and ``index`` ``(N,)`` says which row each token uses; ``index=None`` means a single row
shared by all tokens, which is the common case and runs fused layer-norm kernels.

Matrix products on the CPU go through oneDNN rather than torch's default BLAS: on the AMD
EPYC machines we measure on, oneDNN's fp32 GEMM runs 1.3-2x faster than MKL's and fuses the
bias. Elsewhere (CUDA, bf16, or a torch built without oneDNN) they are plain ``F.linear``.

Mixed precision: autocast does not reach inside an autograd Function, so each one reads the
autocast dtype of its input's device when called and runs with autocast off, casting by hand
(see :func:`_amp_forward`): matrix products run in the autocast dtype (bf16: AMX on recent
Xeons, tensor cores on CUDA), norms and their statistics in at least fp32, and parameter
gradients come back in the parameters' own dtype. Outside autocast every cast is skipped and
the ops compute exactly what they did before.

tests/test_dit.py checks every function here against plain autograd, values and gradients.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from kinetoscope.devices import autocast_dtype
from kinetoscope.dit.rope import apply_rope, inverse_rotation
from kinetoscope.errors import ConfigError

_onednn_linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None

KERNELS = ("fused", "plain")
ENVIRONMENT = "KINETOSCOPE_DIT_KERNELS"
_kernels: str | None = None  # None: the environment's choice, read on first use


def kernels() -> str:
    """The DiT's kernels now: ``"fused"`` (the ops below) or ``"plain"`` (torch's modules and autograd)."""
    global _kernels
    if _kernels is None:
        _kernels = _checked(os.environ.get(ENVIRONMENT) or "fused", ENVIRONMENT)
    return _kernels


def fused() -> bool:
    """Whether the model hands its steps to the fused ops: never inside ``torch.compile``, which
    fuses the plain modules itself (1.2-1.6x faster than eager in benchmarks/RESULTS.md)."""
    return kernels() == "fused" and not torch.compiler.is_compiling()


def set_kernels(name: str | None) -> None:
    """Use ``name`` (``"fused"`` or ``"plain"``) in every DiT from now on; None: the environment's choice again."""
    global _kernels
    _kernels = None if name is None else _checked(name, "set_kernels")


@contextlib.contextmanager
def use_kernels(name: str) -> Iterator[None]:
    """:func:`set_kernels` for the duration of a ``with`` block."""
    global _kernels
    before = _kernels
    set_kernels(name)
    try:
        yield
    finally:
        _kernels = before


def _checked(name: str, source: str) -> str:
    if name not in KERNELS:
        raise ConfigError(f"{source} asks for DiT kernels {name!r}; choose one of {', '.join(KERNELS)}.")
    return name


def dense(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` without autograd (for use inside the functions below).

    oneDNN only for fp32, where it was measured faster; in bf16 torch's own CPU path is oneDNN's
    GEMM already, and its weight gradients (transposed inputs) run faster than ``_linear_pointwise``'s.
    """
    if _onednn_linear is not None and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32:
        return _onednn_linear(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _cast(x: Tensor | None, dtype: torch.dtype | None) -> Tensor | None:
    """``x`` in ``dtype``; ``None`` (outside autocast) leaves it as it is."""
    return x if x is None or dtype is None else x.to(dtype)


def _autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    # Only where it is on: leaving an outermost autocast block clears autocast's cast cache.
    if autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def _amp_forward(forward):
    """``torch.amp.custom_fwd`` for whatever device the first input is on (custom_fwd fixes one).

    Sets ``ctx.amp`` to the autocast dtype there (None when autocast is off) and ``ctx.norm`` to
    the dtype norms run in (at least fp32 under autocast), then runs ``forward`` with autocast
    off, so the dtypes are the ones the function casts to, and not autocast's op-by-op choices.
    """

    @functools.wraps(forward)
    def wrapper(ctx, x, *args):
        ctx.device_type = x.device.type
        ctx.amp = autocast_dtype(ctx.device_type)
        ctx.norm = None if ctx.amp is None else torch.promote_types(x.dtype, torch.float32)
        with _autocast_off(ctx.device_type):
            return forward(ctx, x, *args)

    return wrapper


def _amp_backward(backward):
    """``torch.amp.custom_bwd``'s counterpart of :func:`_amp_forward`: the backward pass casts by hand
    too, whether or not ``.backward()`` is called under autocast. Gradients of activations may come
    back in the compute dtype; autograd casts each to its input's dtype."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with _autocast_off(ctx.device_type):
            return backward(ctx, *grads)

    return wrapper


def _linear_backward(
    grad: Tensor, inputs: Tensor | None, weight: Tensor, needs: tuple[bool, bool, bool], dtype: torch.dtype
):
    """Gradients of :func:`dense` for 2-D inputs, (input, weight, bias), each only if ``needs`` says so.

    ``inputs`` and ``weight`` are in ``grad``'s dtype; the weight and bias gradients come back in
    ``dtype`` (the parameters'), the bias's summed straight into it.
    """
    need_input, need_weight, need_bias = needs
    return (
        dense(grad, weight.t()) if need_input else None,
        dense(grad.t(), inputs.t()).to(dtype) if need_weight else None,
        grad.sum(0, dtype=dtype) if need_bias else None,
    )


class _Linear(torch.autograd.Function):
    @staticmethod
    @_amp_forward
    def forward(ctx, x, weight, bias):
        x = _cast(x, ctx.amp)  # kept in the compute dtype: half the memory under bf16
        ctx.save_for_backward(x, weight)
        return dense(x, _cast(weight, ctx.amp), _cast(bias, ctx.amp))

    @staticmethod
    @once_differentiable
    @_amp_backward
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return _linear_backward(grad, x, _cast(weight, ctx.amp), ctx.needs_input_grad, weight.dtype)


class Linear(nn.Linear):
    """``nn.Linear``; with the fused kernels on, 2-D inputs ``(N, in_features)`` go through :func:`dense`."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or not fused():
            return super().forward(x)
        return _Linear.apply(x, self.weight, self.bias)


def rows(table: Tensor, index: Tensor | None) -> Tensor:
    """Each token's row of a ``(U, D)`` table: ``(N, D)``, or the ``(1, D)`` table itself to broadcast."""
    return table if index is None else table[index]


def row_sums(values: Tensor, index: Tensor | None, num_rows: int) -> Tensor:
    """Gradient of :func:`rows`: sum the ``(N, D)`` values of the tokens that share each row."""
    if index is None:
        return values.sum(0, keepdim=True)
    return values.new_zeros(num_rows, values.shape[-1]).index_add_(0, index, values)


def _modulated_norm(x: Tensor, mult: Tensor, add: Tensor, index: Tensor | None, eps: float):
    """``layer_norm(x) * mult + add`` with per-token rows; also returns the norm's mean and rstd."""
    width = (x.shape[-1],)
    if index is None:  # one row: it is exactly the layer norm's own affine weight and bias
        return torch.native_layer_norm(x, width, mult[0], add[0], eps)
    normed, mean, rstd = torch.native_layer_norm(x, width, None, None, eps)
    return normed.mul_(mult[index]).add_(add[index]), mean, rstd


def _modulated_norm_backward(grad: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, mult: Tensor, add: Tensor, index):
    width = (x.shape[-1],)
    if index is None:
        grad_x, grad_mult, grad_add = torch.ops.aten.native_layer_norm_backward(
            grad, x, width, mean, rstd, mult[0], add[0], [True, True, True]
        )
        return grad_x, grad_mult[None], grad_add[None]
    normed = (x - mean).mul_(rstd)
    grad_mult = row_sums(grad * normed, index, len(mult))
    grad_add = row_sums(grad, index, len(add))
    grad_x = torch.ops.aten.native_layer_norm_backward(
        grad * mult[index], x, width, mean, rstd, None, None, [True, False, False]
    )[0]
    return grad_x, grad_mult, grad_add


class _NormLinear(torch.autograd.Function):
    @staticmethod
    @_amp_forward
    def forward(ctx, x, mult, add, index, weight, bias, eps):
        h, mean, rstd = _modulated_norm(*(_cast(t, ctx.norm) for t in (x, mult, add)), index, eps)
        ctx.save_for_backward(x, mean, rstd, mult, add, index, weight)
        ctx.eps = eps
        return dense(_cast(h, ctx.amp), _cast(weight, ctx.amp), _cast(bias, ctx.amp))

    @staticmethod
    @once_differentiable
    @_amp_backward
    def backward(ctx, grad):
        x, mean, rstd, mult, add, index, weight = ctx.saved_tensors
        x, mult, add = (_cast(t, ctx.norm) for t in (x, mult, add))
        needs = (True, *ctx.needs_input_grad[4:6])
        h = _cast(_modulated_norm(x, mult, add, index, ctx.eps)[0], ctx.amp) if needs[1] else None
        grad_h, grad_weight, grad_bias = _linear_backward(grad, h, _cast(weight, ctx.amp), needs, weight.dtype)
        del h
        grad_h = _cast(grad_h, ctx.norm)
        grad_x, grad_mult, grad_add = _modulated_norm_backward(grad_h, x, mean, rstd, mult, add, index)
        return grad_x, grad_mult, grad_add, None, grad_weight, grad_bias, None


def norm_linear(
    x: Tensor, mult: Tensor, add: Tensor, index: Tensor | None, weight: Tensor, bias: Tensor | None, eps: float
) -> Tensor:
    """``linear(layer_norm(x) * mult[index] + add[index])`` keeping only ``x`` for the backward pass."""
    return _NormLinear.apply(x, mult, add, index, weight, bias, eps)


class _NormMLP(torch.autograd.Function):
    @staticmethod
    @_amp_forward
    def forward(ctx, x, mult, add, index, weight1, bias1, weight2, bias2, eps):
        h, mean, rstd = _modulated_norm(*(_cast(t, ctx.norm) for t in (x, mult, add)), index, eps)
        hidden = dense(_cast(h, ctx.amp), _cast(weight1, ctx.amp), _cast(bias1, ctx.amp))
        del h
        out = dense(F.gelu(hidden, approximate="tanh"), _cast(weight2, ctx.amp), _cast(bias2, ctx.amp))
        ctx.save_for_backward(x, mean, rstd, mult, add, index, weight1, weight2, hidden)
        ctx.eps = eps
        return out

    @staticmethod
    @once_differentiable
    @_amp_backward
    def backward(ctx, grad):
        x, mean, rstd, mult, add, index, weight1, weight2, hidden = ctx.saved_tensors
        activated = F.gelu(hidden, approximate="tanh")
        needs, amp = ctx.needs_input_grad, ctx.amp
        grad_activated, grad_weight2, grad_bias2 = _linear_backward(
            grad, activated, _cast(weight2, amp), (True, *needs[6:8]), weight2.dtype
        )
        del activated
        grad_hidden = torch.ops.aten.gelu_backward(grad_activated, hidden, approximate="tanh")
        del grad_activated
        x, mult, add = (_cast(t, ctx.norm) for t in (x, mult, add))
        h = _cast(_modulated_norm(x, mult, add, index, ctx.eps)[0], amp)
        grad_h, grad_weight1, grad_bias1 = _linear_backward(
            grad_hidden, h, _cast(weight1, amp), (True, *needs[4:6]), weight1.dtype
        )
        del h, grad_hidden
        grad_h = _cast(grad_h, ctx.norm)
        grad_x, grad_mult, grad_add = _modulated_norm_backward(grad_h, x, mean, rstd, mult, add, index)
        return grad_x, grad_mult, grad_add, None, grad_weight1, grad_bias1, grad_weight2, grad_bias2, None


def norm_mlp(
    x: Tensor,
    mult: Tensor,
    add: Tensor,
    index: Tensor | None,
    weight1: Tensor,
    bias1: Tensor,
    weight2: Tensor,
    bias2: Tensor,
    eps: float,
) -> Tensor:
    """GELU-tanh feed-forward of the modulated norm of ``x``, keeping ``x`` and the hidden pre-activation."""
    return _NormMLP.apply(x, mult, add, index, weight1, bias1, weight2, bias2, eps)


class _GatedResidual(torch.autograd.Function):
    """No products, so no casts: the output takes the widest dtype of the three, as ``addcmul`` does
    when ``index`` is None (under autocast, a bf16 branch into an fp32 residual stream stays fp32)."""

    @staticmethod
    @_amp_forward
    def forward(ctx, x, y, gate, index):
        ctx.save_for_backward(y, gate, index)
        return torch.addcmul(x, y, gate[index])

    @staticmethod
    @once_differentiable
    @_amp_backward
    def backward(ctx, grad):
        y, gate, index = ctx.saved_tensors
        return grad, grad * gate[index], row_sums(grad * y, index, len(gate)), None


def gated_residual(x: Tensor, y: Tensor, gate: Tensor, index: Tensor | None) -> Tensor:
    """``x + y * gate[index]`` without materialising per-token gates for the backward pass."""
    if index is None:
        return torch.addcmul(x, y, gate)
    return _GatedResidual.apply(x, y, gate, index)


def _rotate_(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate channel pairs of ``x`` ``(N, heads, head_dim)`` by ``freqs`` ``(N, head_dim // 2, 2)``, in place."""
    if x.dtype == torch.float32:  # eager only: one complex multiply, no temporaries
        torch.view_as_complex(x.view(*x.shape[:-1], -1, 2)).mul_(torch.view_as_complex(freqs)[:, None])
        return x
    return x.copy_(apply_rope(x, freqs))


def _rotated(x: Tensor, freqs: Tensor) -> Tensor:
    """Out-of-place :func:`_rotate_`."""
    if x.dtype == torch.float32:
        pairs = torch.view_as_complex(x.contiguous().view(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * torch.view_as_complex(freqs)[:, None]).flatten(-2)
    return apply_rope(x, freqs)


class _NormalizeHeads(torch.autograd.Function):
    """out = rope(x / rms(x) * w): the per-token 1/rms is folded into the rotation (one pass fewer).

    Under autocast the norm and rotation run in ``ctx.norm`` (fp32) and every output comes out in
    the autocast dtype, the one attention runs in.
    """

    @staticmethod
    @_amp_forward
    def forward(ctx, x, weight, freqs, eps):
        _, groups, heads, head_dim = x.shape
        outputs, rstds = [], []
        weight_ = _cast(weight, ctx.norm)
        for j in range(groups):
            part = x[:, j]
            if j >= len(weight):
                outputs.append(_cast(part, ctx.amp).contiguous())
                continue
            part = _cast(part, ctx.norm)
            norm = torch.linalg.vector_norm(part, dim=(1, 2))
            rstd = norm.square_().div_(heads * head_dim).add_(eps).rsqrt_()
            y = part * weight_[j].view(heads, head_dim)
            y = y.mul_(rstd[:, None, None]) if freqs is None else _rotate_(y, freqs * rstd[:, None, None])
            outputs.append(_cast(y, ctx.amp))
            rstds.append(rstd)
        ctx.save_for_backward(x, weight, freqs, torch.stack(rstds))
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    @_amp_backward
    def backward(ctx, *grads):
        x, weight, freqs, rstds = ctx.saved_tensors
        n, _, heads, head_dim = x.shape
        grad_x = torch.empty_like(x, dtype=ctx.norm)  # in the norm's dtype: the sum below cancels
        grad_weight = torch.empty_like(weight)
        weight_ = _cast(weight, ctx.norm)
        for j, grad in enumerate(grads):
            if grad is None:
                grad = grad_x.new_zeros(n, heads, head_dim)
            if j >= len(weight):
                grad_x[:, j] = grad
                continue
            grad = _cast(grad, ctx.norm)
            rstd = rstds[j][:, None, None]
            if freqs is not None:  # undo the rotation: rotate back by the conjugate
                grad = _rotated(grad, inverse_rotation(freqs))
            normed = _cast(x[:, j], ctx.norm) * rstd
            product = grad * normed
            grad_weight[j] = product.sum(0).flatten()
            dot = product.flatten(1) @ weight_[j]  # (grad * w) . normed, per token
            out = torch.mul(grad, weight_[j].view(heads, head_dim), out=grad_x[:, j])
            out.addcmul_(normed, dot[:, None, None], value=-1.0 / (heads * head_dim)).mul_(rstd)
        return grad_x, grad_weight, None, None


def normalize_heads(x: Tensor, weight: Tensor, freqs: Tensor | None, eps: float) -> tuple[Tensor, ...]:
    """Split ``x`` ``(N, G, heads, head_dim)`` into G tensors ``(N, heads, head_dim)``.

    The first ``len(weight)`` of them (queries, keys) get RMS norm across all heads with their
    row of ``weight`` ``(n, heads * head_dim)``, then RoPE by ``freqs`` if given; the rest
    (values) pass through. Only ``x`` is kept for the backward pass.
    """
    return _NormalizeHeads.apply(x, weight, freqs, eps)
