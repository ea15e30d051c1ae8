"""What a bundle is measured by: the evaluation suites, the floors, the VAE's PSNR and ceiling, sample clips
and the README's main command timed in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinetoscope.errors import CheckpointError
from kinetoscope.release.options import BundleOptions


#: The suites of the model card: the paper's three physics scenarios in and out of distribution,
#: then prompt adherence, object permanence and flicker. Conditioning fidelity (PSNR of the
#: given frames in the output) is measured by every suite that gives frames.
SUITES = (
    "uniform", "uniform-ood", "collision", "collision-ood", "parabola", "parabola-ood",
    "adherence", "objects", "permanence", "flicker",
)  # fmt: skip


PHYSICS = ("uniform", "uniform-ood", "collision", "collision-ood", "parabola", "parabola-ood")


#: The README's main command, timed from the bundle on the CPU.
MAIN_PROMPT = "A large red ball moves right at a moderate speed on a plain white background. The camera is static."


SAMPLE_PROMPTS = (
    MAIN_PROMPT,
    "A small blue ball bounces on a checkered floor. The camera is static.",
    "A red square passes behind a grey bar and comes out on the other side. The camera is static.",
)


# ---------------------------------------------------------------- measurements
def bundle_generator(model_dir: Path, device: str):
    from kinetoscope.eval.suites import pipeline_generator

    return pipeline_generator(model_dir, device=device)


def measure(step: str, stage: Path, options: BundleOptions, generator) -> Any:
    from kinetoscope.eval import run_suite, world_oracle

    size = {"width": options.width, "height": options.height, "frames": options.frames, "fps": options.fps}
    if step in SUITES:
        return run_suite(step, generator, n=options.n, seed=options.seed, **size)
    if step == "floors":  # the metric's floor: the world's own clips through mp4, as the paper's parse floor
        oracle = world_oracle(through_mp4=True)
        return {s: run_suite(s, oracle, n=options.n, seed=options.seed, keep=0, **size) for s in PHYSICS}
    if step == "vae":
        return vae_figures(stage, options)
    if step == "samples":
        return [(p, generator_frames(generator, p, options)) for p in SAMPLE_PROMPTS]
    if step == "timing":
        return time_main_command(stage, options)
    raise AssertionError(step)


def generator_frames(generator, prompt: str, options: BundleOptions) -> np.ndarray:
    from kinetoscope.eval.suites import GenerationRequest

    empty = np.zeros((0, options.height, options.width, 3), dtype=np.uint8)
    request = GenerationRequest(
        prompt, empty, options.frames, options.width, options.height, options.fps, options.seed, False, "mixed"
    )
    return generator(request)


def vae_figures(model_dir: Path, options: BundleOptions) -> dict[str, Any]:
    """Mean PSNR and SSIM of ``n`` held-out world clips (every in-distribution scenario) through the
    VAE, and the objects suite's shares on its own clips through the VAE: the transformer's ceiling."""
    from kinetoscope.eval import run_suite, world_oracle
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct
    from kinetoscope.world import clip_seed, sample_clip

    vae = load_vae(model_dir, device=options.device)
    tc = vae.temporal_compression
    ceiling = run_suite(
        "objects", world_oracle(vae=vae), n=options.n, seed=options.seed, keep=0, width=options.width,
        height=options.height, frames=1 + tc * ((options.frames - 1) // tc), fps=options.fps,
    )  # fmt: skip
    scores = []
    for index in range(options.n):
        clip = sample_clip(
            "mixed", seed=clip_seed(options.seed + 1, index), width=options.width, height=options.height,
            frames=options.frames, fps=options.fps,
        )  # fmt: skip
        frames = fit_frames(clip.frames, vae)
        scores.append(reconstruct(vae, frames)[1])
    errors = [s["object_error"] for s in scores if s["object_error"] is not None]
    return {
        "psnr": float(np.mean([s["psnr"] for s in scores])),
        "ssim": float(np.mean([s["ssim"] for s in scores])),
        "object_error": float(np.mean(errors)) if errors else None,
        "clips": len(scores),
        "shape": f"{len(frames)}x{frames.shape[2]}x{frames.shape[1]}",
        "objects": ceiling.claim_rates(),
    }


def main_command(model: str, options: BundleOptions, out: str) -> list[str]:
    return [
        "kinetoscope", "generate", MAIN_PROMPT, "--model", model, "--width", str(options.timing_width),
        "--height", str(options.timing_height), "--seconds", f"{options.timing_seconds:g}", "--out", out,
    ]  # fmt: skip


def time_main_command(model_dir: Path, options: BundleOptions) -> dict[str, Any]:
    """Run the README's main command from the bundle in a fresh CPU process and time it (imports and loading included)."""
    samples = model_dir / "samples"
    samples.mkdir(exist_ok=True)
    argv = main_command(str(model_dir), options, str(samples / "main_command.mp4"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KINETOSCOPE_PROGRESS": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kinetoscope.cli", *argv[1:]], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise CheckpointError(f"The main command failed on the bundle: {done.stderr.strip().splitlines()[-1:]}")
    return {
        "seconds": seconds,
        "command": " ".join(_quote(a) for a in main_command(str(options.out), options, "ball.mp4")),
        "output": done.stdout.strip(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def leg_figures(measured: dict[str, Any]) -> dict[str, float | None]:
    """What a leg is judged by: the objects suite's shares, the uniform velocity error, the VAE's PSNR
    and the shape share its reconstructions allow."""
    rates = measured["objects"].claim_rates()
    velocity = measured["uniform"].summary()["velocity"]["mean"]
    return {
        **{k: rates.get(k) for k in ("colour", "shape", "motion")},
        "uniform_velocity": velocity,
        "vae_psnr": measured["vae"]["psnr"],
        "vae_object_error": measured["vae"]["object_error"],
        "vae_shape": measured["vae"]["objects"].get("shape"),
    }
