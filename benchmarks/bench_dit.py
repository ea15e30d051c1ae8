"""kinetoscope's DiT against diffusers' WanTransformer3DModel: forward + backward time and peak memory.

Both models get the same shape (layers, width, heads, FFN, patch, in/out channels, text width and
length) with random weights, in fp32 on the CPU, and the script checks that their parameter
counts are equal. Time: both models live in this process and their steps are interleaved, so
machine noise hits both alike; the median over repeats is reported. A step is the whole
training forward and backward: ours includes packing the latent into tokens, Wan's includes its
Conv3d patch embedding and unpatchify; the loss is the mean squared output.

Peak memory: each model runs in a fresh subprocess (so neither inherits the other's freed
memory) with glibc's mmap threshold pinned at 128 KiB, so every tensor of any size is mapped
and unmapped on its own and resident memory follows live tensors. After one warm-up step and
with gradients freed, the process resets its peak (``/proc/self/clear_refs``), runs one step
and reports peak resident memory (VmHWM) minus resident memory just before the step: the
activations, gradients and temporaries of one training step, on top of the weights.

    python benchmarks/bench_dit.py                       # 1k and 4k tokens, writes nothing
    python benchmarks/bench_dit.py --tokens 1024 --repeats 3
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

# (latent frames, height, width) giving exactly this many tokens with patch (1, 2, 2).
LATENT_SIZES = {1024: (4, 32, 32), 4096: (4, 64, 64)}
TEXT_LENGTH = 64
PRESET = "s"


def build(which: str):
    """The model and a function running one training step of it on a fixed random input.

    ``ours-torch-gemm`` is ours with its matrix products sent through ``F.linear`` (torch's
    default BLAS) instead of oneDNN: it shows what the fused ops alone give.
    """
    from kinetoscope.dit import DiT, DiTConfig, ops, pack

    config = DiTConfig.from_preset(PRESET, in_channels=16)
    torch.manual_seed(0)
    if which.startswith("ours"):
        model = DiT(config).train()
        # Random modulation and output weights, as in a trained model (adaLN-Zero starts them at zero).
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.02)
        gemm = None if which == "ours-torch-gemm" else ops._onednn_linear

        def step(latent, text):
            ops._onednn_linear = gemm
            batch = pack([latent[0]], config.patch_size)
            t = torch.full((batch.tokens.shape[0],), 0.5)
            mask = torch.ones(text.shape[:2], dtype=torch.bool)
            model(batch, t, text, mask).square().mean().backward()

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

        def step(latent, text):
            model(latent, timestep, text, return_dict=False)[0].square().mean().backward()

    return model, config, step


def inputs(config, tokens: int):
    frames, height, width = LATENT_SIZES[tokens]
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(1, config.in_channels, frames, height, width, generator=generator)
    text = torch.randn(1, TEXT_LENGTH, config.text_dim, generator=generator)
    return latent, text


def timed(model, step, latent, text) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    step(latent, text)
    return time.perf_counter() - start


def compare_time(tokens: int, repeats: int, variants: list[str]) -> dict:
    models = {which: build(which) for which in variants}
    counts = {which: sum(p.numel() for p in model.parameters()) for which, (model, _, _) in models.items()}
    assert len(set(counts.values())) == 1, f"shapes differ: {counts}"
    latent, text = inputs(models["ours"][1], tokens)
    for model, _, step in models.values():  # warm-up
        timed(model, step, latent, text)
    times = {which: [] for which in models}
    for _ in range(repeats):
        for which, (model, _, step) in models.items():
            times[which].append(timed(model, step, latent, text))
    return {"parameters": counts["ours"], "median": {k: statistics.median(v) for k, v in times.items()}, "all": times}


def attention_share(tokens: int) -> float:
    """Fraction of Wan's step spent inside scaled_dot_product_attention (forward and backward), profiled."""
    from torch.profiler import profile

    model, config, step = build("wan")
    latent, text = inputs(config, tokens)
    timed(model, step, latent, text)
    model.zero_grad(set_to_none=True)
    with profile() as prof:
        step(latent, text)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key) / total


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(which: str, tokens: int) -> dict:
    """Run in a fresh process: peak resident memory of one training step above the resident weights."""
    model, config, step = build(which)
    latent, text = inputs(config, tokens)
    timed(model, step, latent, text)
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set size
    before = _status_kib("VmRSS")
    step(latent, text)
    return {"peak_mib": (_status_kib("VmHWM") - before) / 1024}


def compare_memory(tokens: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    result = {}
    for which in ("wan", "ours"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-of",
                which,
                "--tokens",
                str(tokens),
                "--threads",
                str(torch.get_num_threads()),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result[f"{which}_mib"] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096], choices=sorted(LATENT_SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--ablation", action="store_true", help="also time ours with torch's default GEMM")
    parser.add_argument("--memory-of", choices=["ours", "wan"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, args.tokens[0])))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {PRESET!r}, text length {TEXT_LENGTH}")
    variants = ["wan", "ours"] + (["ours-torch-gemm"] if args.ablation else [])
    for tokens in args.tokens:
        t = compare_time(tokens, args.repeats, variants)
        m = compare_memory(tokens)
        median = t["median"]
        print(
            f"{tokens} tokens ({t['parameters'] / 1e6:.1f}M parameters each): "
            f"time wan {median['wan']:.2f}s ours {median['ours']:.2f}s speedup {median['wan'] / median['ours']:.2f}x | "
            f"peak memory wan {m['wan_mib']:.0f} MiB ours {m['ours_mib']:.0f} MiB ratio {m['ours_mib'] / m['wan_mib']:.2f}"
        )
        if args.ablation:
            print(
                f"  ours with torch's default GEMM: {median['ours-torch-gemm']:.2f}s, "
                f"speedup {median['wan'] / median['ours-torch-gemm']:.2f}x"
            )
        paired = statistics.median(w / o for w, o in zip(t["all"]["wan"], t["all"]["ours"]))
        print(f"  median of the per-round speedups (each round runs every model once, back to back): {paired:.2f}x")
        print(f"  wan's time inside scaled_dot_product_attention (profiled): {attention_share(tokens):.0%}")
        print("  per-repeat seconds:", {k: [round(x, 2) for x in v] for k, v in t["all"].items()})


if __name__ == "__main__":
    main()
