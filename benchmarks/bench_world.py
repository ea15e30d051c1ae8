"""Render rate of the procedural world on one pinned core, against Pillow with 4x supersampling.

The competitor is what synthetic-video datasets usually do: draw each frame with
``PIL.ImageDraw`` at 4x the size and box-downsample it for anti-aliasing. Both draw the very
same ground-truth states (shapes, colours, positions, background, occluder), and the script
checks that their pictures agree before it prints the rates.

    python benchmarks/bench_world.py                 # 64x64, 32 frames a clip
    python benchmarks/bench_world.py --size 256x256

Reports frames per second for drawing only (``render_state``) and for whole clips
(``sample_clip``: scenario, physics, ground truth, captions and drawing).
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy loads its BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time

import numpy as np
from PIL import Image, ImageDraw

from kinetoscope.world import render_state, sample_clip, sample_state
from kinetoscope.world.shapes import POLYGONS

SCENARIOS = ("uniform", "collision", "billiards", "occlusion", "static", "bounce", "pan", "paint")
#: Scenarios the Pillow competitor can draw (plain or gradient backgrounds, no paint trail, static camera).
PIL_CAN_DRAW = ("uniform", "collision", "billiards", "occlusion")
SUPERSAMPLE = 4


def pil_render(state: dict) -> np.ndarray:
    """Draw ``state`` with Pillow at ``SUPERSAMPLE`` x the size and box-filter it down."""
    width, height, s = state["width"], state["height"], SUPERSAMPLE
    ppu = height / 10 * s
    backdrop = _pil_background(state["background"], width * s, height * s)
    frames = np.empty((state["frames"], height, width, 3), dtype=np.uint8)
    for f in range(state["frames"]):
        image = backdrop.copy()
        draw = ImageDraw.Draw(image)
        for obj in state["objects"]:
            x, y = obj["position"][f]
            u, v, r = x * ppu, height * s - y * ppu, obj["radius"] * ppu
            color = tuple(obj["rgb"])
            if obj["shape"] == "ball":
                draw.ellipse([u - r, v - r, u + r, v + r], fill=color)
            else:
                draw.polygon([(u + px * r, v - py * r) for px, py in POLYGONS[obj["shape"]]], fill=color)
        if state["occluder"]:
            o = state["occluder"]
            draw.rectangle(
                [o["x0"] * ppu, height * s - o["y1"] * ppu, o["x1"] * ppu, height * s - o["y0"] * ppu],
                fill=tuple(o["rgb"]),
            )
        frames[f] = np.asarray(image.resize((width, height), Image.BOX))
    return frames


def _pil_background(background: dict, width: int, height: int) -> Image.Image:
    colors = np.asarray(background["rgb"], dtype=np.float32)
    if background["kind"] == "plain":
        return Image.new("RGB", (width, height), tuple(int(c) for c in colors[0]))
    share = ((height - np.arange(height) - 0.5) / height)[:, None, None]  # 1 at the top
    rows = colors[1] + share * (colors[0] - colors[1])
    return Image.fromarray(np.rint(np.broadcast_to(rows, (height, width, 3))).astype(np.uint8))


def frames_per_second(fn, frames: int, seconds: float) -> float:
    """Best of five timed rounds (the machine is shared: the best round is the least disturbed)."""
    fn()  # warm up
    best = 0.0
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            fn()
            count += 1
        best = max(best, count * frames / (time.perf_counter() - start))
    return best


def first_seed(name: str, clip: dict, drawable: bool) -> int:
    """Seed 0, or for a Pillow comparison the first seed whose background Pillow can draw."""
    for seed in range(100):
        if not drawable or sample_state(name, seed=seed, **clip)["background"]["kind"] != "floor":
            return seed
    raise RuntimeError(f"no {name} clip without a floor background in 100 seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="Time spent on each measurement.")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    clip = {"width": width, "height": height, "frames": args.frames, "fps": 10.0}

    print(f"world render rate, {width}x{height}, {args.frames} frames a clip, one pinned core")
    print(
        f"{'scenario':<10} {'objects':>7} {'draw fps':>10} {'clip fps':>10} {'PIL 4x fps':>11} {'draw / PIL':>11} {'mean |diff|':>12}"
    )
    for name in SCENARIOS:
        seed = first_seed(name, clip, name in PIL_CAN_DRAW)
        state = sample_state(name, seed=seed, **clip)
        draw = frames_per_second(lambda state=state: render_state(state), args.frames, args.seconds)
        whole = frames_per_second(
            lambda name=name, seed=seed: sample_clip(name, seed=seed, **clip), args.frames, args.seconds
        )
        pil = ratio = diff = "-"
        if name in PIL_CAN_DRAW:
            ours, theirs = render_state(state).astype(np.float32), pil_render(state).astype(np.float32)
            diff = f"{np.abs(ours - theirs).mean():.2f}"
            pil_fps = frames_per_second(lambda state=state: pil_render(state), args.frames, args.seconds)
            pil, ratio = f"{pil_fps:.0f}", f"{draw / pil_fps:.1f}x"
        print(f"{name:<10} {len(state['objects']):>7} {draw:>10.0f} {whole:>10.0f} {pil:>11} {ratio:>11} {diff:>12}")


if __name__ == "__main__":
    main()
