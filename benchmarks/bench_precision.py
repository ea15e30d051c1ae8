"""Sampling in float32 against bfloat16 on this CPU: what ``--dtype auto`` should pick here.

The README's main command (a 2 s 128x128 clip, 30 steps) with the bundled model, and the same
call with a preset-``s`` transformer (22M, random weights) at 256x256, each timed in both
precisions in one process, alternating, after a warm-up; the frames are compared too, since
a faster precision only counts at the same quality. Prints the CPU's name and its bf16 units.

    python benchmarks/bench_precision.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import header  # this folder is on the path

PROMPT = "A large red ball moves right at a moderate speed on a plain white background. The camera is static."


def larger_model(tmp: Path) -> Path:
    """The bundled model's VAE and text encoder with a preset-s transformer (random weights)."""
    from kinetoscope.bundled import WORLD, bundled_model
    from kinetoscope.dit import DiT, DiTConfig
    from kinetoscope.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(bundled_model(WORLD))
    torch.manual_seed(0)
    config = DiTConfig.from_preset("s", in_channels=pipe.vae.latent_channels, text_dim=pipe.dit.config.text_dim)
    pipe.dit = DiT(config).eval()
    return pipe.save_pretrained(tmp / "preset-s", name="preset-s")


def time_call(pipe, size: int, steps: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    result = pipe(PROMPT, width=size, height=size, seconds=2.0, steps=steps, seed=0, expand=False)
    return time.perf_counter() - started, result.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tempfile

    from kinetoscope.bundled import WORLD, bundled_model
    from kinetoscope.pipeline import Pipeline

    print(header(f"{args.steps} sampling steps"))
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, size in (("bundled model", bundled_model(WORLD), 128), ("preset s (22M)", larger_model(Path(tmp)), 256)):
            pipes = {dtype: Pipeline.from_pretrained(model, dtype=dtype) for dtype in ("float32", "bfloat16")}
            for pipe in pipes.values():
                time_call(pipe, size, 2)  # warm-up: first-call allocations and kernel choices
            seconds: dict[str, list[float]] = {dtype: [] for dtype in pipes}
            frames = {}
            for _ in range(args.repeats):
                for dtype, pipe in pipes.items():
                    took, frames[dtype] = time_call(pipe, size, args.steps)
                    seconds[dtype].append(took)
            fp32, bf16 = (statistics.median(seconds[d]) for d in ("float32", "bfloat16"))
            difference = np.abs(frames["float32"].astype(float) - frames["bfloat16"].astype(float)).mean()
            print(
                f"{label}, 2 s at {size}x{size}, {args.steps} steps: float32 {fp32:.2f} s, bfloat16 {bf16:.2f} s "
                f"(bf16 speed-up {fp32 / bf16:.2f}x; median of {args.repeats}); frames differ by {difference:.2f} "
                "levels of 255 on average"
            )


if __name__ == "__main__":
    main()
