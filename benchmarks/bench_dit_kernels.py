"""The DiT's kernels, measured: plain torch modules, the same under torch.compile, and the fused ops.

The three variants run one model (the same weights) and differ only in the switch of
``kinetoscope.dit.ops`` (``plain`` or ``fused``) and, for ``compile``, in ``torch.compile``
(inductor) around the plain model. Two shapes:

- ``bundled``: the bundled model (``models/world/dit``, its config and weights) on a packed batch
  of ten 384-token clips (latents 16x6x16x16, patch (1, 2, 2)), captions of 20-38 tokens;
- ``s``: preset ``s`` (random weights) on one clip of 1,024 tokens (16x4x32x32), 64 text tokens.

Two steps: ``train``, forward (each clip its own time, as in training) and backward of the mean
squared output, and ``sample``, a forward without autograd at one time for the whole batch. Each
in fp32 and under bf16 autocast (backward outside it, as the trainer does). After ``--warmup``
calls of each variant (the compile happens there; its seconds are in the notes) the variants
run round by round, one call each per round, in an order that rotates, so load that drifts
hits them alike. Time is the median over ``--repeats`` rounds; "vs plain" is the median over
rounds of plain's time divided by the variant's (above 1: faster than plain). "differs" is the
relative distance of the variant's output (in its warm-up) to plain's.

Prints a markdown table for benchmarks/RESULTS.md, headed by the CPU, its bf16 units and the load.
Compiling is most of the run: each shape, dtype and step is a graph of its own, 1-4 minutes each
on two cores, so ``--quick`` leaves ``compile`` out unless ``--variants`` names it.

    python benchmarks/bench_dit_kernels.py --threads 2          # everything: about half an hour
    python benchmarks/bench_dit_kernels.py --threads 1 --shapes s --dtypes bf16
    python benchmarks/bench_dit_kernels.py --quick              # smoke test: bundled, fp32, 1 repeat, no compile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import warnings

import torch

from machine import bf16_units, cpu_model  # this folder is on the path

VARIANTS = ("plain", "compile", "fused")
SHAPES = ("bundled", "s")
DTYPES = ("fp32", "bf16")
STEPS = ("train", "sample")


def build(shape: str):
    """The model, its packed batch, per-clip and shared times, text and mask, and a label."""
    from kinetoscope.bundled import WORLD, bundled_model
    from kinetoscope.dit import DiT, DiTConfig, pack

    generator = torch.Generator().manual_seed(0)
    if shape == "bundled":
        model = DiT.from_pretrained(bundled_model(WORLD) / "dit")
        latents = [torch.randn(16, 6, 16, 16, generator=generator) for _ in range(10)]
        text_lens = list(range(20, 40, 2))
    else:
        torch.manual_seed(0)
        model = DiT(DiTConfig.from_preset("s", in_channels=16))
        with torch.no_grad():  # as after training: adaLN-Zero starts modulation and output at zero
            for p in model.parameters():
                if not p.any():
                    p.normal_(std=0.02)
        latents = [torch.randn(16, 4, 32, 32, generator=generator)]
        text_lens = [64]
    config = model.config
    batch = pack(latents, config.patch_size)
    per_clip = batch.per_sample(torch.linspace(0.1, 0.9, len(latents)))
    shared = torch.full_like(per_clip, 0.5)
    text = torch.randn(len(latents), max(text_lens), config.text_dim, generator=generator)
    mask = torch.arange(max(text_lens))[None] < torch.tensor(text_lens)[:, None]
    label = (
        f"{shape}: width {config.width}, depth {config.depth}, heads {config.heads}, ffn {config.ffn_dim}; "
        f"{len(latents)} x {batch.seq_lens[0]} tokens"
    )
    return model, (batch, per_clip, shared, text, mask), label


def make_call(model, compiled, variant: str, step: str, dtype: str, inputs):
    """A function running one step of ``variant``; returns the model's output, for the warm-up to compare."""
    from kinetoscope.dit import ops

    batch, per_clip, shared, text, mask = inputs
    net = compiled if variant == "compile" else model
    kernels = "fused" if variant == "fused" else "plain"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()

    def call():
        with ops.use_kernels(kernels):
            if step == "sample":
                model.eval()
                with torch.no_grad(), autocast():
                    return net(batch, shared, text, mask).float()
            model.train()
            model.zero_grad(set_to_none=True)
            with autocast():
                out = net(batch, per_clip, text, mask).float()
            out.square().mean().backward()
            return out.detach()

    return call


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def short_reason(error: Exception) -> str:
    """The first line of an error, cut to one short sentence for a table cell."""
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    line = line.replace("|", "/")
    return f"{type(error).__name__}: {line[:160]}".rstrip(".") + "."


def measure(model, compiled, inputs, step: str, dtype: str, variants, warmup: int, repeats: int) -> dict:
    calls = {v: make_call(model, compiled, v, step, dtype, inputs) for v in variants}
    notes, first = {v: "" for v in variants}, {}
    for variant in list(calls):
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for _ in range(warmup):
                    first[variant] = calls[variant]()
            except Exception as error:  # noqa: BLE001 - a failed compile is a result, recorded in its row
                if variant != "compile":
                    raise
                notes[variant] = f"compile failed: {short_reason(error)}"
                del calls[variant]
                continue
        if variant == "compile":
            said = sorted({str(w.message).split(".")[0] for w in caught if "inductor" in w.filename.lower()})
            notes[variant] = "; ".join([f"warm-up {time.perf_counter() - started:.0f} s (compiling)", *said])
    times = {v: [] for v in calls}
    order = list(calls)
    for round_ in range(repeats):
        shift = round_ % len(order)
        for variant in order[shift:] + order[:shift]:
            started = time.perf_counter()
            calls[variant]()
            times[variant].append(time.perf_counter() - started)
    rows = {}
    for variant in variants:
        if variant not in times:
            rows[variant] = {"seconds": None, "ratio": None, "differs": None, "note": notes[variant]}
            continue
        ratio = None
        if "plain" in times:
            ratio = statistics.median(p / s for p, s in zip(times["plain"], times[variant]))
        differs = rel_diff(first[variant], first["plain"]) if "plain" in first and variant != "plain" else None
        rows[variant] = {
            "seconds": statistics.median(times[variant]),
            "ratio": ratio,
            "differs": differs,
            "note": notes[variant],
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="default: all (--quick: plain, fused)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="calls of each variant before timing (compile: 2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: bundled shape, fp32, 1 repeat, 1 warm-up")
    args = parser.parse_args()
    if args.quick:
        args.shapes, args.dtypes, args.repeats, args.warmup = ["bundled"], ["fp32"], 1, 1
    args.variants = args.variants or (["plain", "fused"] if args.quick else list(VARIANTS))
    torch.set_num_threads(args.threads)
    # Every shape, dtype and step is a graph of its own; the default limit (8) would stop compiling.
    if "compile" in args.variants:
        from torch._dynamo import config as dynamo_config

        dynamo_config.recompile_limit = 64

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU: {cpu_model()}; {bf16_units()}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} rounds after "
        f"{args.warmup} warm-up calls, load average before: {load}\n"
    )
    print("| shape | dtype | step | kernels | median s | vs plain | differs | notes |")
    print("|---|---|---|---|---:|---:|---:|---|")
    skipped = [v for v in VARIANTS if v not in args.variants]
    for shape in args.shapes:
        model, inputs, label = build(shape)
        compiled = torch.compile(model) if "compile" in args.variants else None
        print(f"| **{label}** | | | | | | | |", flush=True)
        for dtype in args.dtypes:
            for step in args.steps:
                rows = measure(model, compiled, inputs, step, dtype, args.variants, args.warmup, args.repeats)
                if args.quick and "compile" in skipped:
                    rows["compile"] = {"seconds": None, "ratio": None, "differs": None, "note": "not run: --quick"}
                for variant in [v for v in VARIANTS if v in rows]:
                    row = rows[variant]
                    seconds = "-" if row["seconds"] is None else f"{row['seconds']:.3f}"
                    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
                    differs = "-" if row["differs"] is None else f"{row['differs']:.0e}"
                    print(
                        f"| {shape} | {dtype} | {step} | {variant} | {seconds} | {ratio} | {differs} | {row['note']} |",
                        flush=True,
                    )
        del model, compiled


if __name__ == "__main__":
    main()
