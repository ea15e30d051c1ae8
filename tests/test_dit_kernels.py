"""The DiT's two implementations, plain torch modules and the fused ops, compute the same function.

Errors are relative over a whole tensor (``|a - b| / |b|``). In fp32 the two differ only in the
order of roundings (about 1e-7), so 1e-5 leaves room and still catches any real difference. Under
bf16 autocast both cast at the same places (norms in fp32, products in bf16), but a value that
lands near a bf16 rounding boundary may round either way, and one bf16 step is 2^-9 = 0.2%: the
bound there is 1e-2 for outputs and the whole gradient, 2e-2 for each parameter's gradient (the
two measured 2e-3 and 4e-3 at most on the tiny model), well below what one wrong cast or a lost
term gives (bf16 itself is 5e-3 from fp32 there; test_precision.py checks that).
"""

import pytest
import torch

from kinetoscope.bundled import WORLD, bundled_model
from kinetoscope.dit import DiT, DiTConfig, ops, pack
from kinetoscope.errors import ConfigError

C = 4  # latent channels of the tiny preset


@pytest.fixture(autouse=True)
def _restore_switch(monkeypatch):
    """Each test leaves the process's kernel choice as it found it."""
    monkeypatch.setattr(ops, "_kernels", ops._kernels)


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm()).item()


def tiny_model(text_attention: str) -> DiT:
    torch.manual_seed(0)
    model = DiT(DiTConfig.from_preset("tiny", text_attention=text_attention))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-like weights: adaLN-Zero starts modulation and output at zero
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def inputs(config: DiTConfig, shared_time: bool, seed: int = 2):
    """A packed batch of two clips of different sizes, with 3 and 5 text tokens."""
    g = torch.Generator().manual_seed(seed)
    batch = pack([torch.randn(C, 5, 4, 6, generator=g), torch.randn(C, 1, 8, 4, generator=g)], config.patch_size)
    times = torch.tensor([0.4, 0.4] if shared_time else [0.2, 0.7])
    t = batch.per_sample(times)
    if not shared_time:
        t[:6] = 0.0  # the first clip's first frame is given: a third modulation row
    text = torch.randn(2, 5, config.text_dim, generator=g)
    mask = torch.arange(5)[None] < torch.tensor([[3], [5]])
    return batch, t, text, mask


def run(model: DiT, kernels: str, data, amp: bool = False):
    """Output and parameter gradients of a weighted sum of the output, with ``kernels``."""
    model.zero_grad(set_to_none=True)
    batch, t, text, mask = data
    with ops.use_kernels(kernels), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(batch, t, text, mask)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        (out.float() * weights).sum().backward()
    return out.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("shared_time", [False, True], ids=["per-token-times", "one-time"])
@pytest.mark.parametrize("text_attention", ["cross", "joint"])
def test_plain_and_fused_agree_in_fp32(text_attention, shared_time):
    model = tiny_model(text_attention)
    data = inputs(model.config, shared_time)
    fused, fused_grads = run(model, "fused", data)
    plain, plain_grads = run(model, "plain", data)
    assert plain.dtype == fused.dtype == torch.float32
    assert rel_error(plain, fused) < 1e-5
    assert plain_grads.keys() == fused_grads.keys()
    for name, grad in plain_grads.items():
        assert grad is not None and fused_grads[name] is not None, name
        assert rel_error(grad, fused_grads[name]) < 1e-5, f"{name}: {rel_error(grad, fused_grads[name]):.2e}"


@pytest.mark.parametrize("shared_time", [False, True], ids=["per-token-times", "one-time"])
@pytest.mark.parametrize("text_attention", ["cross", "joint"])
def test_plain_and_fused_agree_under_bf16_autocast(text_attention, shared_time):
    model = tiny_model(text_attention)
    data = inputs(model.config, shared_time)
    fused, fused_grads = run(model, "fused", data, amp=True)
    plain, plain_grads = run(model, "plain", data, amp=True)
    assert plain.dtype == fused.dtype == torch.bfloat16  # the output projection ran in bf16 both ways
    assert rel_error(plain, fused) < 1e-2
    for name, grad in plain_grads.items():
        assert grad.dtype == torch.float32, name  # fp32 weights get fp32 gradients
        assert rel_error(grad, fused_grads[name]) < 2e-2, f"{name}: {rel_error(grad, fused_grads[name]):.2e}"
    flat = torch.cat([g.flatten() for g in plain_grads.values()])
    assert rel_error(flat, torch.cat([g.flatten() for g in fused_grads.values()])) < 1e-2


def test_the_committed_model_loads_and_gives_the_same_output_both_ways():
    directory = bundled_model(WORLD) / "dit"
    model = DiT.from_pretrained(directory)  # raises if a saved tensor has no place or one is missing
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    config = model.config
    g = torch.Generator().manual_seed(0)
    batch = pack([torch.randn(16, 3, 8, 8, generator=g), torch.randn(16, 1, 6, 10, generator=g)], config.patch_size)
    t = batch.per_sample(torch.tensor([0.3, 0.8]))
    text = torch.randn(2, 7, config.text_dim, generator=g)
    mask = torch.arange(7)[None] < torch.tensor([[7], [4]])
    with torch.no_grad():
        outputs = {k: run_forward(model, k, batch, t, text, mask) for k in ops.KERNELS}
    assert outputs["fused"].abs().mean() > 0.1  # a trained model, not zeros
    assert rel_error(outputs["plain"], outputs["fused"]) < 1e-5


def run_forward(model, kernels, *args):
    with ops.use_kernels(kernels):
        return model(*args)


def test_the_environment_variable_selects_the_path(monkeypatch):
    model = tiny_model("cross")
    data = inputs(model.config, shared_time=False)
    calls = []
    norm_linear = ops.norm_linear
    monkeypatch.setattr(ops, "norm_linear", lambda *a: calls.append(1) or norm_linear(*a))

    for name, expect_calls in [("plain", False), ("fused", True), ("", True)]:  # unset or empty: fused
        monkeypatch.setenv(ops.ENVIRONMENT, name)
        ops.set_kernels(None)  # back to the environment's choice, read again
        assert ops.kernels() == (name or "fused")
        calls.clear()
        with torch.no_grad():
            model(*data)
        assert bool(calls) == expect_calls, name

    monkeypatch.setenv(ops.ENVIRONMENT, "plain")
    ops.set_kernels("fused")  # set in code, it wins over the environment
    assert ops.kernels() == "fused"
    with ops.use_kernels("plain"):
        assert ops.kernels() == "plain"
    assert ops.kernels() == "fused"

    monkeypatch.setenv(ops.ENVIRONMENT, "fast")
    ops.set_kernels(None)
    with pytest.raises(ConfigError, match="KINETOSCOPE_DIT_KERNELS asks for DiT kernels 'fast'"):
        ops.kernels()
    with pytest.raises(ConfigError, match="choose one of fused, plain"):
        ops.set_kernels("triton")


def test_the_kernel_benchmark_runs_and_prints_a_table():
    """``--quick`` sampling only (a few seconds; its training step takes 10-20 s more)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dit_kernels.py"
    args = [sys.executable, str(script), "--quick", "--steps", "sample", "--threads", "1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.startswith("CPU: ") and "AMX-BF16" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| bundled |")]
    assert [[cell.strip() for cell in row[:4]] for row in rows] == [
        ["bundled", "fp32", "sample", kernels] for kernels in ("plain", "compile", "fused")
    ]
    plain, compiled, fused = rows
    assert plain[5].strip() == "1.00x" and float(fused[5].strip().rstrip("x")) > 0
    assert float(fused[6]) < 1e-5  # the two kernels' outputs agree
    assert "not run" in compiled[7]


def test_compiled_blocks_take_every_packing_without_recompiling(monkeypatch):
    """``compile: true`` compiles block by block with a dynamic token count; the packing (how many
    samples, how long each) stays outside the graphs, so batches of other lengths and sample
    counts reuse them, and the outputs are eager's."""
    from kinetoscope.train.distributed import apply_compile

    torch._dynamo.reset()
    model = tiny_model("cross")
    eager = {}
    g = torch.Generator().manual_seed(4)
    batches = []
    # The first three settle the graphs (a modulation row per sample or one for all, and sizes that
    # happened to be equal at first); the rest, other lengths and counts, must reuse them.
    sizes_of = [[(5, 4, 6), (1, 8, 4)], [(3, 4, 4)], [(1, 4, 4), (5, 8, 8), (3, 4, 6)]]
    sizes_of += [[(5, 8, 4)], [(1, 4, 4)] * 4, [(3, 8, 8), (1, 4, 6)], [(5, 4, 4)] * 3]
    for sizes in sizes_of:
        batch = pack([torch.randn(C, *s, generator=g) for s in sizes], model.config.patch_size)
        t = batch.per_sample(torch.rand(len(sizes), generator=g))
        text = torch.randn(len(sizes), 5, model.config.text_dim, generator=g)
        mask = torch.ones(len(sizes), 5, dtype=torch.bool)
        batches.append((batch, t, text, mask))
    with torch.no_grad():  # the default kernels: compiled code traces the plain modules whatever the switch
        for i, data in enumerate(batches):
            eager[i] = model(*data)
        apply_compile(model, list(model.blocks))
        for name in ("norm_mlp", "normalize_heads"):  # used in blocks alone: traced code is the plain modules
            monkeypatch.setattr(ops, name, lambda *a, name=name: pytest.fail(f"ops.{name} was traced"))
        for i, data in enumerate(batches[:3]):
            assert rel_error(model(*data), eager[i]) < 1e-5
        with torch._dynamo.config.patch(error_on_recompile=True):
            for i, data in enumerate(batches[3:], start=3):
                assert rel_error(model(*data), eager[i]) < 1e-5
    torch._dynamo.reset()


def test_importing_the_dit_leaves_dynamo_unloaded():
    """Importing dynamo costs a fresh process most of a second (every generate command pays it);
    only compiling loads it."""
    import subprocess
    import sys

    code = "import sys, kinetoscope.dit; print('torch._dynamo' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
