"""benchmarks/machine.py: the FLOP counts and peaks that bench_dit.py and bench_vae.py divide by.

torch's FlopCounterMode misses the ops these models run on a CPU (its flash attention for the
CPU, oneDNN's convolution and linear); a miss would silently lower a model's fraction of peak.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "machine.py"
spec = importlib.util.spec_from_file_location("bench_machine", PATH)
machine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(machine)


def test_cpu_attention_is_counted_forward_and_backward_with_its_dtype():
    q, k, v = (torch.randn(1, 2, 64, 16, requires_grad=True) for _ in range(3))
    shape = q.shape
    expected = sdpa_flop_count(shape, shape, shape) + sdpa_backward_flop_count(shape, shape, shape, shape)
    assert machine.count_flops(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward()) == (expected, 0.0)
    with machine.autocast("bf16"):
        flops, in_bf16 = machine.count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert (flops, in_bf16) == (sdpa_flop_count(shape, shape, shape), 1.0)


def test_onednn_convolution_and_linear_count_as_torch_s_own():
    x, w = torch.randn(1, 4, 3, 8, 8), torch.randn(8, 4, 3, 3, 3)
    direct = machine.count_flops(lambda: F.conv3d(x, w, None, 1, 1))
    assert direct[0] == 2 * 8 * 4 * 27 * 3 * 8 * 8
    if torch.backends.mkldnn.is_available():
        onednn = machine.count_flops(lambda: torch.mkldnn_convolution(x, w, None, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1))
        assert onednn == direct
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        pytest.skip("no oneDNN linear in this torch")
    a, weight = torch.randn(10, 32), torch.randn(64, 32)
    fused = machine.count_flops(lambda: torch.ops.mkldnn._linear_pointwise(a, weight, None, "none", [], ""))
    assert fused == machine.count_flops(lambda: F.linear(a, weight)) == (2 * 10 * 32 * 64, 0.0)


def test_peak_header_and_table():
    assert machine.gemm_peak("fp32", size=64, repeats=1) > 0
    assert machine.gemm_peak("bf16", size=64, repeats=1) > 0
    header = machine.header("a test")
    assert header.startswith("CPU: ") and "AMX-BF16" in header and "AVX-512 BF16" in header
    assert "load average before" in header and torch.__version__ in header
    assert machine.markdown(["a", "b"], [["x", "1"]], right=1) == "| a | b |\n| --- | ---: |\n| x | 1 |"
