"""bf16 autocast on the CPU: the DiT's fused ops, the model, sampling and a few training steps against fp32.

Errors are relative (``|a - b| / |b|`` over a whole tensor). bf16 keeps 8 bits of mantissa, so a
single rounding costs up to 2^-9 = 0.2%; a product or a layer stacks a few of those. The bounds
below (2-3%) are several times what the code reaches (about 0.5-1% on the tiny DiT) and far
below what a wrong cast or a gradient lost on the way would give.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from kinetoscope.dit import DiT, DiTConfig, ops, pack, packed_attention
from kinetoscope.dit.rope import apply_rope, rope_frequencies
from kinetoscope.flow import add_noise, flow_loss, sample

BF16 = torch.bfloat16
C = 4  # latent channels of the tiny preset


def autocast(enabled: bool = True):
    return torch.autocast("cpu", dtype=BF16, enabled=enabled)


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm()).item()


# --- each fused op against plain autograd ----------------------------------------------


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _run(fn, inputs, out_weights, amp, backward_in_autocast=False):
    """Outputs and input gradients of ``sum(out * w)``; ``fn`` runs under bf16 autocast if ``amp``."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    with autocast(amp):
        outs = _as_tuple(fn(*leaves))
    with autocast(amp and backward_in_autocast):
        sum((o.float() * w).sum() for o, w in zip(outs, out_weights)).backward()
    return outs, [t.grad for t in leaves]


def _check_op(fused, reference, inputs, out_dtype, tol=2e-2, backward_in_autocast=False):
    """Under autocast the fused op gives outputs in ``out_dtype``, gradients in each input's dtype, and
    values and gradients within ``tol`` of fp32 and of plain autograd under autocast."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        shapes = [o.shape for o in _as_tuple(reference(*inputs))]
    out_weights = [torch.randn(s, generator=g) for s in shapes]
    exact_outs, exact_grads = _run(reference, [t.float() for t in inputs], out_weights, amp=False)
    ref_outs, ref_grads = _run(reference, inputs, out_weights, amp=True)
    outs, grads = _run(fused, inputs, out_weights, amp=True, backward_in_autocast=backward_in_autocast)
    for i, (out, exact, ref) in enumerate(zip(outs, exact_outs, ref_outs)):
        assert out.dtype == out_dtype, f"output {i} is {out.dtype}"
        assert rel_error(out, exact) < tol, f"output {i}: {rel_error(out, exact):.2e} from fp32"
        assert rel_error(out, ref) < tol, f"output {i}: {rel_error(out, ref):.2e} from autograd under autocast"
    for i, (grad, exact, ref, x) in enumerate(zip(grads, exact_grads, ref_grads, inputs)):
        assert grad.dtype == x.dtype, f"gradient {i} is {grad.dtype} for a {x.dtype} input"
        assert torch.isfinite(grad).all()
        assert rel_error(grad, exact) < tol, f"gradient {i}: {rel_error(grad, exact):.2e} from fp32"
        assert rel_error(grad, ref) < tol, f"gradient {i}: {rel_error(grad, ref):.2e} from autograd under autocast"


N, D, EPS = 64, 32, 1e-6


def _modulated(x, mult, add, index):
    return F.layer_norm(x, (D,), eps=EPS) * ops.rows(mult, index) + ops.rows(add, index)


@pytest.mark.parametrize("x_dtype", [torch.float32, BF16], ids=["fp32-stream", "bf16-stream"])
@pytest.mark.parametrize("index", [None, torch.arange(N) % 3], ids=["shared-row", "per-token-rows"])
def test_norm_ops_under_autocast(index, x_dtype):
    g = torch.Generator().manual_seed(0)
    rows = 1 if index is None else 3
    x = torch.randn(N, D, generator=g).to(x_dtype)
    mult, add = 1 + 0.3 * torch.randn(rows, D, generator=g), 0.3 * torch.randn(rows, D, generator=g)
    w1, b1 = torch.randn(48, D, generator=g) / D**0.5, 0.1 * torch.randn(48, generator=g)
    w2, b2 = torch.randn(D, 48, generator=g) / 48**0.5, 0.1 * torch.randn(D, generator=g)
    _check_op(
        lambda x, m, a, w, b: ops.norm_linear(x, m, a, index, w, b, EPS),
        lambda x, m, a, w, b: F.linear(_modulated(x, m, a, index), w, b),
        [x, mult, add, w1, b1],
        out_dtype=BF16,
    )
    _check_op(
        lambda x, m, a, w1, b1, w2, b2: ops.norm_mlp(x, m, a, index, w1, b1, w2, b2, EPS),
        lambda x, m, a, w1, b1, w2, b2: F.linear(
            F.gelu(F.linear(_modulated(x, m, a, index), w1, b1), approximate="tanh"), w2, b2
        ),
        [x, mult, add, w1, b1, w2, b2],
        out_dtype=BF16,
        backward_in_autocast=True,  # .backward() under autocast must give the same
    )
    y, gate = torch.randn(N, D, generator=g).to(BF16), torch.randn(rows, D, generator=g)
    _check_op(  # a bf16 branch into the stream: no product, so fp32 as addcmul promotes
        lambda x, y, gate: ops.gated_residual(x, y, gate, index),
        lambda x, y, gate: x + y * ops.rows(gate, index),
        [x, y, gate],
        out_dtype=torch.float32,
    )


@pytest.mark.parametrize("x_dtype", [torch.float32, BF16], ids=["fp32-qkv", "bf16-qkv"])
@pytest.mark.parametrize("with_rope", [True, False])
def test_normalize_heads_under_autocast(with_rope, x_dtype):
    g = torch.Generator().manual_seed(0)
    heads, head_dim = 2, 16
    qkv = torch.randn(N, 3, heads, head_dim, generator=g).to(x_dtype)
    weight = 1 + 0.3 * torch.randn(2, heads * head_dim, generator=g)
    freqs = rope_frequencies(torch.randint(0, 20, (N, 3), generator=g), head_dim) if with_rope else None

    def reference(qkv, weight):
        out = []
        for j in range(3):
            part = qkv[:, j]
            if j < 2:
                part = F.rms_norm(part.flatten(1).float(), (heads * head_dim,), weight[j], EPS)
                part = part.unflatten(1, (heads, -1))
                part = apply_rope(part, freqs) if with_rope else part
            out.append(part)
        return tuple(out)

    # Every output in bf16, the dtype attention runs in under autocast.
    _check_op(lambda qkv, w: ops.normalize_heads(qkv, w, freqs, EPS), reference, [qkv, weight], out_dtype=BF16)


def test_linear_under_autocast():
    g = torch.Generator().manual_seed(0)
    layer = ops.Linear(D, 48)
    x = torch.randn(N, D, generator=g)
    _check_op(
        lambda x, w, b: ops._Linear.apply(x, w, b),
        F.linear,
        [x, layer.weight.detach(), layer.bias.detach()],
        out_dtype=BF16,
    )


def _dense_attention(q, k, v, q_lens, kv_lens):
    """Full attention with a block-diagonal mask; rows with no keys give zeros."""
    q_ids = torch.repeat_interleave(torch.arange(len(q_lens)), torch.tensor(q_lens))
    k_ids = torch.repeat_interleave(torch.arange(len(kv_lens)), torch.tensor(kv_lens))
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.float().masked_fill(q_ids[:, None] != k_ids[None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", torch.softmax(scores, dim=-1).nan_to_num(0.0).to(v.dtype), v)


def test_packed_attention_under_autocast(monkeypatch):
    """With gradients, small segments run in fp32 (faster on the CPU), large ones in bf16; either way
    the output is bf16, as autocast's, and values and gradients stay close to fp32. Sampling (no
    gradients) runs all of them in bf16."""
    g = torch.Generator().manual_seed(0)
    q_lens, kv_lens = [5, 300, 9], [4, 300, 0]  # 300 x 300 scores are over the threshold; one has no keys
    q = torch.randn(sum(q_lens), 2, 16, generator=g)
    k, v = torch.randn(2, sum(kv_lens), 2, 16, generator=g)
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):  # records the dtype each call runs in: autocast casts inside it
        calls.append((q.shape[2], torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else q.dtype))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    _check_op(
        lambda q, k, v: packed_attention(q, k, v, q_lens, kv_lens, backend="sdpa"),
        lambda q, k, v: _dense_attention(q, k, v, q_lens, kv_lens),
        [q, k, v],
        out_dtype=BF16,
    )
    assert calls == [(5, torch.float32), (300, BF16)]
    calls.clear()
    with torch.no_grad(), autocast():
        assert packed_attention(q, k, v, q_lens, kv_lens, backend="sdpa").dtype == BF16
    assert calls == [(5, BF16), (300, BF16)]


# --- the model ------------------------------------------------------------------------


def tiny_model(text_attention="cross", seed=0):
    """The tiny DiT with its zero-initialised (adaLN-Zero) weights made random, as after training."""
    config = DiTConfig.from_preset("tiny", text_attention=text_attention)
    torch.manual_seed(seed)
    model = DiT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def flow_batch(config, shared_time=False, seed=0):
    """An image, a short video and an odd aspect ratio, packed, noised, with their text."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(C, 1, 6, 8), (C, 5, 4, 4), (C, 2, 2, 10)]
    latents = [torch.randn(shape, generator=g) for shape in shapes]
    batch = pack(latents, config.patch_size)
    if shared_time:
        t = torch.full((batch.tokens.shape[0],), 0.6)
    else:
        t = batch.per_sample(torch.rand(3, generator=g))
        t[12:16] = 0.0  # the video's first frame is given
    text = torch.randn(3, 6, config.text_dim, generator=g)
    mask = torch.arange(6)[None] < torch.tensor([3, 6, 1])[:, None]
    x_t, target = add_noise(batch.tokens, torch.randn(batch.tokens.shape, generator=g), t)
    return batch.with_tokens(x_t), t, text, mask, target


def _loss_and_grads(model, inputs, amp, backward_in_autocast=False):
    *model_inputs, target = inputs
    model.zero_grad()
    with autocast(amp):
        velocity = model(*model_inputs)
        loss = flow_loss(velocity, target)
    with autocast(amp and backward_in_autocast):
        loss.backward()
    return velocity, loss, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("shared_time", [False, True], ids=["per-token-time", "shared-time"])
@pytest.mark.parametrize("text_attention", ["cross", "joint"])
def test_dit_forward_backward_under_autocast_matches_fp32(text_attention, shared_time):
    model = tiny_model(text_attention)
    inputs = flow_batch(model.config, shared_time)
    velocity, loss, grads = _loss_and_grads(model, inputs, amp=False)
    velocity16, loss16, grads16 = _loss_and_grads(model, inputs, amp=True, backward_in_autocast=shared_time)
    assert velocity16.dtype == BF16  # the output projection ran in bf16
    assert rel_error(velocity16, velocity) < 3e-2
    assert rel_error(loss16, loss) < 1e-2
    for name, grad in grads16.items():
        assert grad.dtype == torch.float32, name  # fp32 master weights get fp32 gradients
        assert torch.isfinite(grad).all(), name
        if grads[name].norm() > 0:
            assert rel_error(grad, grads[name]) < 1e-1, name
    flat = torch.cat([g.flatten() for g in grads16.values()])
    assert rel_error(flat, torch.cat([g.flatten() for g in grads.values()])) < 3e-2


@pytest.mark.parametrize("text_attention", ["cross", "joint"])
def test_products_run_in_bf16_under_autocast(monkeypatch, text_attention):
    """Every matrix product of the fused ops, forward and backward, gets bf16 operands (AMX on the
    CPU, tensor cores on CUDA); outside autocast they all stay fp32."""
    seen = []
    dense = ops.dense

    def spy(x, weight, bias=None):
        seen.append({x.dtype, weight.dtype} | ({bias.dtype} if bias is not None else set()))
        return dense(x, weight, bias)

    monkeypatch.setattr(ops, "dense", spy)
    model = tiny_model(text_attention)
    inputs = flow_batch(model.config)
    with ops.use_kernels("fused"):  # the products watched are the fused ops'; the plain path is torch's own
        _loss_and_grads(model, inputs, amp=True)
        assert len(seen) > 20 and all(dtypes == {BF16} for dtypes in seen)
        seen.clear()
        _loss_and_grads(model, inputs, amp=False)
        assert len(seen) > 20 and all(dtypes == {torch.float32} for dtypes in seen)


def test_sampling_under_autocast_matches_fp32():
    model = tiny_model().requires_grad_(False)
    batch, _, text, mask, _ = flow_batch(model.config)
    noise = torch.randn(batch.tokens.shape, generator=torch.Generator().manual_seed(3))
    outputs = {}
    for amp in (False, True):
        with torch.no_grad(), autocast(amp):
            outputs[amp] = sample(lambda x, t: model(batch.with_tokens(x), t, text, mask), noise, 4)
    assert outputs[True].dtype == torch.float32  # the integration stays in the noise's dtype
    assert torch.isfinite(outputs[True]).all()
    assert rel_error(outputs[True], outputs[False]) < 3e-2


def test_training_steps_under_autocast_track_fp32():
    """Six AdamW steps on random batches: the bf16 run's losses and weights stay with the fp32 run's."""
    model = tiny_model()
    runs = {}
    for amp in (False, True):
        trained = copy.deepcopy(model)
        optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3, weight_decay=0.0)
        losses = []
        for step in range(6):
            _, loss, _ = _loss_and_grads(trained, flow_batch(trained.config, seed=step), amp)
            optimizer.step()
            losses.append(loss.item())
        runs[amp] = torch.tensor(losses), torch.cat([p.detach().flatten() for p in trained.parameters()])
    (losses, weights), (losses16, weights16) = runs[False], runs[True]
    assert torch.isfinite(losses16).all()
    assert ((losses16 - losses).abs() / losses).max() < 2e-2, (losses.tolist(), losses16.tolist())
    start = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert rel_error(weights16 - start, weights - start) < 1e-1  # the updates themselves agree


# --- which precision a training run's ``auto`` picks -------------------------------------


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "amx_bf16", "amx_tile"}, BF16), ({"avx2", "avx512f", "avx512_bf16"}, None), ({"avx2", "avx512f"}, None), (set(), None)],
)
def test_training_auto_takes_bf16_on_a_cpu_only_with_amx(monkeypatch, flags, expected):
    from kinetoscope import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset(flags))
    assert devices.training_autocast("auto", torch.device("cpu")) is expected
    assert devices.training_autocast("fp32", torch.device("cpu")) is None
    assert devices.training_autocast("auto", torch.device("cuda")) is BF16


def test_bf16_asked_of_a_cpu_that_emulates_it_is_kept_with_a_warning(monkeypatch, capsys):
    from kinetoscope import devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2"}))
    assert devices.training_autocast("bf16", torch.device("cpu")) is BF16
    assert "no bf16 units" in capsys.readouterr().err
    assert devices.training_autocast("bf16", torch.device("cpu"), warn=False) is BF16
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    devices.training_autocast("bf16", torch.device("cpu"))
    assert capsys.readouterr().err == ""


def test_cpu_flags_are_read_from_cpuinfo_as_listed():
    from pathlib import Path

    from kinetoscope.devices import cpu_flags

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        assert cpu_flags() == frozenset()
        return
    line = next((row for row in cpuinfo.read_text().splitlines() if row.startswith("flags")), "flags:")
    assert cpu_flags() == frozenset(line.split(":", 1)[1].split())
