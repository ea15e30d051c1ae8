"""What the benchmarks against diffusers print beside their figures: the machine and its GEMM peak.

- :func:`cpu_model` and :func:`bf16_units`: the CPU (the CPUs of one machine kind differ) and
  whether it has bf16 units (AMX, AVX-512 BF16), which decide what bf16 can gain on it.
- :func:`gemm_peak`: GFLOP/s of a large square ``torch.mm`` in fp32 or bf16 at the current
  thread count, measured in the benchmark's own run so that a model's fraction of it compares
  like with like.
- :func:`count_flops`: the FLOPs of one call, counted by torch's ``FlopCounterMode`` (matrix
  products, convolutions, attention), taught the CPU ops it does not know, and the share of
  them that ran in bf16.
- :func:`autocast`: bf16 as a user of either library runs it on a CPU, ``torch.autocast``.

Not a benchmark: ``bench_dit.py`` and ``bench_vae.py`` import it (this folder is on their path).
"""

from __future__ import annotations

import collections
import contextlib
import os
import statistics
import subprocess
import time
from typing import Callable

import torch

from kinetoscope.devices import cpu_flags

DTYPES = ("fp32", "bf16")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_model() -> str:
    """``lscpu``'s model name, printed beside every figure: the CPUs of one machine kind differ."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown CPU")


def bf16_units() -> str:
    """Whether the CPU has AMX-BF16 and AVX-512 BF16 (``/proc/cpuinfo`` flags), and torch's CPU capability."""
    flags = cpu_flags()
    yes = {True: "yes", False: "no"}
    return (
        f"AMX-BF16 {yes['amx_bf16' in flags]}, AVX-512 BF16 {yes['avx512_bf16' in flags]}, "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )


def header(what: str) -> str:
    """Two lines for the top of a benchmark's output: the CPU, then torch, threads and the load before the run."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"CPU: {cpu_model()}; {bf16_units()}\n"
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {what}; load average before: {load}"
    )


def autocast(dtype: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on the CPU for ``bf16``; nothing for ``fp32``."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=TORCH_DTYPES[dtype])


GEMM_SIZE, GEMM_REPEATS = 2048, 5


def gemm_peak(dtype: str, size: int = GEMM_SIZE, repeats: int = GEMM_REPEATS) -> float:
    """GFLOP/s of ``torch.mm`` of two ``size`` x ``size`` matrices of ``dtype``: median of
    ``repeats`` calls after one warm-up, at the current thread count (wall time)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(TORCH_DTYPES[dtype]) for _ in range(2))
    torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def gflops(peaks: dict[str, float]) -> str:
    """``fp32 150 GFLOP/s, bf16 1400 GFLOP/s``."""
    return ", ".join(f"{dtype} {value:.0f} GFLOP/s" for dtype, value in peaks.items())


def gemm_peaks(dtypes: list[str], when: str) -> dict[str, float]:
    """:func:`gemm_peak` of each dtype, printed on one line."""
    peaks = {dtype: gemm_peak(dtype) for dtype in dtypes}
    what = f"torch.mm {GEMM_SIZE} x {GEMM_SIZE}, median of {GEMM_REPEATS}"
    print(f"GEMM peak {when} ({what}): {gflops(peaks)}", flush=True)
    return peaks


def _extra_formulas() -> dict:
    """FLOP formulas for the CPU ops torch's counter leaves out: its flash attention for the CPU
    (forward and backward, the kernel ``scaled_dot_product_attention`` picks there), oneDNN's
    convolution (``torch.mkldnn_convolution``, which our VAE calls) and oneDNN's linear (our
    DiT's fused kernels). Each takes shapes, as torch's own formulas do."""
    from torch.utils.flop_counter import conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    formulas = {
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward: (
            lambda grad, q, k, v, *_, **__: sdpa_backward_flop_count(grad, q, k, v)
        ),
        aten.mkldnn_convolution: lambda x, w, *_, out_shape, **__: conv_flop_count(x, w, out_shape, False),
    }
    if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        formulas[torch.ops.mkldnn._linear_pointwise] = lambda x, w, *_, out_shape, **__: 2 * out_shape.numel() * w[1]
    return formulas


def count_flops(fn: Callable[[], object]) -> tuple[int, float]:
    """FLOPs of one call of ``fn`` (its backward too, if it runs one) and the share of them whose
    first input was bf16. ``fn`` runs once, untimed."""
    from torch.utils.flop_counter import FlopCounterMode, flop_registry, shape_wrapper

    by_dtype: collections.Counter = collections.Counter()

    def tallied(formula):
        def count(*args, out_val=None, **kwargs):
            flops = formula(*args, out_val=out_val, **kwargs)
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            by_dtype[None if first is None else first.dtype] += flops
            return flops

        count._get_raw = True  # FlopCounterMode hands it the tensors, as to torch's own entries
        return count

    formulas = {**flop_registry, **{op: shape_wrapper(f) for op, f in _extra_formulas().items()}}
    counter = FlopCounterMode(display=False, custom_mapping={op: tallied(f) for op, f in formulas.items()})
    with counter:
        fn()
    total = counter.get_total_flops()
    return total, (by_dtype[torch.bfloat16] / total if total else 0.0)


def markdown(header: list[str], rows: list[list[str]], right: int) -> str:
    """A markdown table; columns from ``right`` on are numbers, aligned right."""
    align = ["---"] * right + ["---:"] * (len(header) - right)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, align, *rows])
