"""kinetoscope's DiT against diffusers' WanTransformer3DModel: forward + backward time and peak memory.

Both models get the same shape (layers, width, heads, FFN, patch, in/out channels, text width and
length) with random weights on the CPU, and the script checks that their parameter counts are
equal. Each comparison runs in fp32 and in bf16 (``--dtypes``): bf16 is ``torch.autocast("cpu",
dtype=torch.bfloat16)`` around the forward of both models alike, as a user of either library runs
mixed precision on a CPU, with the loss and the backward outside it.

Time: both models live in this process and their steps are interleaved, so machine noise hits
both alike; the median over repeats is reported, in wall and process CPU seconds. A step is the
whole training forward and backward: ours includes packing the latent into tokens, Wan's
includes its Conv3d patch embedding and unpatchify; the loss is the mean squared output. A third
row times the self-attention alone (the same torch kernel both models call, once per layer,
forward and backward), which bounds what any implementation can gain. On a machine shared with
other jobs, ``--threads 1`` measures compute; with more threads every parallel region waits for a
core the others may hold.

Fraction of the machine's peak: the run times a 2048 x 2048 ``torch.mm`` in each dtype at its
thread count, before and after the models (the larger is the peak). Each model's FLOPs for one
step are counted once per shape and dtype, in an untimed step, by torch's ``FlopCounterMode``
(matrix products, convolutions, attention), with the share of them that ran in bf16; achieved
GFLOP/s is those FLOPs over the median step time.

Peak memory: each model runs in a fresh subprocess (so neither inherits the other's freed
memory) with glibc's mmap threshold pinned at 128 KiB, so every tensor of any size is mapped
and unmapped on its own and resident memory follows live tensors. After one warm-up step and
with gradients freed, the process resets its peak (``/proc/self/clear_refs``), runs one step
and reports peak resident memory (VmHWM) minus resident memory just before the step: the
activations, gradients and temporaries of one training step, on top of the weights.

``--compile`` adds both models compiled block by block, as each library does it for training:
ours as ``kinetoscope train`` with ``compile: true`` (each block by ``torch.compile``, dynamic in
the token count), Wan by diffusers' ``compile_repeated_blocks``. Compiling happens in two
untimed warm-up steps; compiled rows are compared with Wan compiled.

The output ends with a markdown table for benchmarks/RESULTS.md, headed by the CPU model.

    python benchmarks/bench_dit.py                       # 1k and 4k tokens, fp32 and bf16, writes nothing
    python benchmarks/bench_dit.py --tokens 1024 --repeats 3 --threads 1 --dtypes bf16
    python benchmarks/bench_dit.py --quick               # smoke test: 256 tokens, 1 repeat, 1 thread
    python benchmarks/bench_dit.py --compile --threads 1 # also both compiled (several minutes of compiling)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from machine import DTYPES, autocast, count_flops, gemm_peaks, gflops, header, markdown  # this folder is on the path

# (latent frames, height, width) giving exactly this many tokens with patch (1, 2, 2).
LATENT_SIZES = {256: (4, 16, 16), 1024: (4, 32, 32), 4096: (4, 64, 64)}
TEXT_LENGTH = 64
PRESET = "s"
LABELS = {
    "wan": "Wan",
    "ours": "ours",
    "attention": "self-attention alone (bound)",
    "ours-torch-gemm": "ours, torch's GEMM",
    "wan-compiled": "Wan, compiled",
    "ours-compiled": "ours, compiled",
}


def build(which: str):
    """The model (compiled block by block if ``which`` ends in ``-compiled``), and a function
    ``step(latent, text, dtype)``; see :func:`build_eager`."""
    if not which.endswith("-compiled"):
        return build_eager(which)
    model, config, step = build_eager(which.removesuffix("-compiled"))
    if which.startswith("ours"):
        from kinetoscope.train.distributed import apply_compile

        apply_compile(model, model.blocks)  # as `kinetoscope train` with compile: true
    else:
        model.compile_repeated_blocks()  # diffusers' regional compilation of its blocks
    return model, config, step


def build_eager(which: str):
    """The model and a function ``step(latent, text, dtype)`` running one training step of it
    on a fixed random input, the forward under ``dtype``'s autocast, the backward outside it.

    ``ours-torch-gemm`` is ours with its fp32 matrix products sent through ``F.linear`` (torch's
    default BLAS) instead of oneDNN: it shows what the fused ops alone give. ``attention`` is no
    model: only the self-attention both models run, ``depth`` times forward and backward.
    """
    from kinetoscope.dit import DiT, DiTConfig, ops, pack

    config = DiTConfig.from_preset(PRESET, in_channels=16)
    torch.manual_seed(0)
    if which == "attention":
        return None, config, attention_step(config)
    if which.startswith("ours"):
        model = DiT(config).train()
        # Random modulation and output weights, as in a trained model (adaLN-Zero starts them at zero).
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.02)
        gemm = None if which == "ours-torch-gemm" else ops._onednn_linear

        def step(latent, text, dtype="fp32"):
            ops._onednn_linear = gemm
            batch = pack([latent[0]], config.patch_size)
            t = torch.full((batch.tokens.shape[0],), 0.5)
            mask = torch.ones(text.shape[:2], dtype=torch.bool)
            with autocast(dtype):
                out = model(batch, t, text, mask)
            out.float().square().mean().backward()

    else:
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel(
            patch_size=config.patch_size,
            num_attention_heads=config.heads,
            attention_head_dim=config.head_dim,
            in_channels=config.in_channels,
            out_channels=config.in_channels,
            text_dim=config.text_dim,
            freq_dim=config.freq_dim,
            ffn_dim=config.ffn_dim,
            num_layers=config.depth,
            eps=config.eps,
        ).train()
        timestep = torch.tensor([500.0])

        def step(latent, text, dtype="fp32"):
            with autocast(dtype):
                out = model(latent, timestep, text, return_dict=False)[0]
            out.float().square().mean().backward()

    return model, config, step


def inputs(config, tokens: int):
    frames, height, width = LATENT_SIZES[tokens]
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(1, config.in_channels, frames, height, width, generator=generator)
    text = torch.randn(1, TEXT_LENGTH, config.text_dim, generator=generator)
    return latent, text


def timed(model, step, latent, text, dtype) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of one step. On a shared machine CPU time
    leaves out the time the scheduler gave to other jobs (with one thread it is the compute time)."""
    if model is not None:
        model.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter(), time.process_time()
    step(latent, text, dtype)
    return time.perf_counter() - wall, time.process_time() - cpu


def compare_time(tokens: int, dtypes: list[str], repeats: int, variants: list[str]) -> dict:
    """Per dtype, every variant's FLOPs for one step (counted in an untimed step) and its step
    times, interleaved round by round after a warm-up step of each."""
    models = {which: build(which) for which in variants}
    counts = {w: sum(p.numel() for p in model.parameters()) for w, (model, _, _) in models.items() if model is not None}
    assert len(set(counts.values())) == 1, f"shapes differ: {counts}"
    latent, text = inputs(models["ours"][1], tokens)
    result = {"parameters": counts["ours"], "depth": models["ours"][1].depth}
    for dtype in dtypes:
        flops = {}
        for which, (model, _, step) in models.items():
            if which.endswith("-compiled"):  # the same FLOPs as the eager model; counting would not see inside
                flops[which] = flops[which.removesuffix("-compiled")]
                continue
            if model is not None:
                model.zero_grad(set_to_none=True)
            flops[which] = count_flops(lambda: step(latent, text, dtype))
        print(
            f"{tokens} tokens, {dtype}: GFLOP per step "
            + ", ".join(f"{LABELS[w]} {f / 1e9:.1f} ({share:.0%} in bf16)" for w, (f, share) in flops.items()),
            flush=True,
        )
        for which, (model, _, step) in models.items():  # warm-up; compiling takes two steps (forward, backward)
            for _ in range(2 if which.endswith("-compiled") else 1):
                timed(model, step, latent, text, dtype)
        times = {which: [] for which in models}
        cpu = {which: [] for which in models}
        for _ in range(repeats):
            for which, (model, _, step) in models.items():
                wall_s, cpu_s = timed(model, step, latent, text, dtype)
                times[which].append(wall_s)
                cpu[which].append(cpu_s)
        result[dtype] = {
            "flops": flops,
            "median": {k: statistics.median(v) for k, v in times.items()},
            "cpu_median": {k: statistics.median(v) for k, v in cpu.items()},
            "all": times,
        }
    return result


def attention_step(config):
    """Self-attention alone, as both models call it: torch's scaled_dot_product_attention over
    ``(1, heads, tokens, head_dim)`` views of ``(tokens, heads, head_dim)`` tensors, once per
    block, forward (under the dtype's autocast) and backward. Neither model can be faster than
    this part of its step."""
    import torch.nn.functional as F

    def step(latent, text, dtype="fp32"):
        tokens = latent[0, 0].numel() // (config.patch_size[1] * config.patch_size[2])
        q, k, v = (torch.randn(tokens, config.heads, config.head_dim).transpose(0, 1)[None] for _ in range(3))
        for _ in range(config.depth):
            q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
            with autocast(dtype):
                out = F.scaled_dot_product_attention(q, k, v)
            out.backward(torch.ones_like(out))

    return step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(which: str, tokens: int, dtype: str) -> dict:
    """Run in a fresh process: peak resident memory of one training step above the resident weights."""
    model, config, step = build(which)
    latent, text = inputs(config, tokens)
    timed(model, step, latent, text, dtype)
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size
    before = _status_kib("VmRSS")
    step(latent, text, dtype)
    return {"peak_mib": (_status_kib("VmHWM") - before) / 1024}


def compare_memory(tokens: int, dtype: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    result = {}
    for which in ("wan", "ours"):
        args = ["--memory-of", which, "--tokens", str(tokens), "--dtypes", dtype]
        out = subprocess.run(
            [sys.executable, __file__, *args, "--threads", str(torch.get_num_threads())],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result[f"{which}_mib"] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    return result


def report(tokens: int, dtype: str, t: dict, m: dict, ablation: bool) -> None:
    """The detail lines of one shape and dtype, as before the table."""
    median, cpu, all_ = t[dtype]["median"], t[dtype]["cpu_median"], t[dtype]["all"]
    print(
        f"{tokens} tokens, {dtype} ({t['parameters'] / 1e6:.1f}M parameters each): "
        f"time wan {median['wan']:.2f}s ours {median['ours']:.2f}s speedup {median['wan'] / median['ours']:.2f}x | "
        f"peak memory wan {m['wan_mib']:.0f} MiB ours {m['ours_mib']:.0f} MiB ratio {m['ours_mib'] / m['wan_mib']:.2f}"
    )
    if ablation:
        print(
            f"  ours with torch's default GEMM: {median['ours-torch-gemm']:.2f}s, "
            f"speedup {median['wan'] / median['ours-torch-gemm']:.2f}x"
        )
    print(
        f"  CPU time (all threads): wan {cpu['wan']:.2f}s ours {cpu['ours']:.2f}s speedup {cpu['wan'] / cpu['ours']:.2f}x, "
        f"self-attention alone {cpu['attention']:.2f}s"
    )
    paired = statistics.median(w / o for w, o in zip(all_["wan"], all_["ours"]))
    print(f"  median of the per-round speedups (each round runs every model once, back to back): {paired:.2f}x")
    print(
        f"  self-attention alone (the same SDPA kernel in both, {t['depth']} layers, forward and "
        f"backward): {median['attention']:.2f}s, {median['attention'] / median['wan']:.0%} of wan's step; a model "
        f"calling that kernel is at most {median['wan'] / median['attention']:.2f}x faster than wan"
    )
    print("  per-repeat seconds:", {k: [round(x, 2) for x in v] for k, v in all_.items()}, flush=True)


def reference(which: str, median: dict) -> str:
    """The Wan row a row of ours is compared with: compiled against compiled, eager against eager."""
    return "wan-compiled" if which.endswith("-compiled") and "wan-compiled" in median else "wan"


def table_rows(tokens: int, dtype: str, t: dict, m: dict, peak: float) -> list[list[str]]:
    """Markdown rows of one shape and dtype: each model's time, FLOPs, share of the GEMM peak, memory, ratios."""
    median = t[dtype]["median"]
    rows = []
    for which, seconds in median.items():
        flops, in_bf16 = t[dtype]["flops"][which]
        achieved = flops / seconds / 1e9
        mib = m.get(f"{which}_mib")
        rows.append(
            [
                str(tokens),
                dtype,
                LABELS[which],
                f"{seconds:.2f}",
                f"{flops / 1e9:.1f}",
                f"{achieved:.0f}",
                f"{achieved / peak:.0%}",
                f"{in_bf16:.0%}" if dtype == "bf16" else "-",
                "-" if mib is None else f"{mib:.0f}",
                "-" if which.startswith("wan") else f"{median[reference(which, median)] / seconds:.2f}x",
                f"{mib / m['wan_mib']:.2f}" if which == "ours" else "-",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", choices=sorted(LATENT_SIZES), help="default: 1024 4096")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--repeats", type=int, help="default: 5")
    parser.add_argument("--threads", type=int, help="default: all cores")
    parser.add_argument("--ablation", action="store_true", help="also time ours with torch's default GEMM")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time both compiled block by block (ours as training compiles it, Wan by compile_repeated_blocks)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 256 tokens, 1 repeat, 1 thread (unless given)"
    )
    parser.add_argument("--memory-of", choices=["ours", "wan"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tokens = args.tokens or ([256] if args.quick else [1024, 4096])
    args.repeats = args.repeats or (1 if args.quick else 5)
    torch.set_num_threads(args.threads or (1 if args.quick else os.cpu_count()))
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, args.tokens[0], args.dtypes[0])))
        return
    from kinetoscope.dit import ops

    what = f"DiT preset {PRESET!r}, text length {TEXT_LENGTH}, ours with {ops.kernels()} kernels"
    print(header(f"{what}, median of {args.repeats}"))
    before = gemm_peaks(args.dtypes, "before the models")
    variants = ["wan", "ours", "attention"] + (["ours-torch-gemm"] if args.ablation else [])
    variants += ["wan-compiled", "ours-compiled"] if args.compile else []
    measured = []
    for tokens in args.tokens:
        t = compare_time(tokens, args.dtypes, args.repeats, variants)
        for dtype in args.dtypes:
            m = compare_memory(tokens, dtype)
            report(tokens, dtype, t, m, args.ablation)
            measured.append((tokens, dtype, t, m))
    after = gemm_peaks(args.dtypes, "after the models")
    peak = {dtype: max(before[dtype], after[dtype]) for dtype in args.dtypes}
    print(
        f"\nFraction of peak: the step's FLOPs over its median time, over the larger GEMM peak of this run "
        f"({gflops(peak)}). Speed-up: Wan's median time over the row's (compiled rows: Wan compiled); memory: ours over Wan's peak.\n"
    )
    columns = ["tokens", "dtype", "model", "median s", "GFLOP/step", "GFLOP/s", "of GEMM peak", "in bf16"]
    columns += ["peak MiB", "speed-up vs Wan", "memory vs Wan"]
    rows = [row for tokens, dtype, t, m in measured for row in table_rows(tokens, dtype, t, m, peak[dtype])]
    print(markdown(columns, rows, right=3))


if __name__ == "__main__":
    main()
