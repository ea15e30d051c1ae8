"""Generate a set of clips through the real pipeline, for bench_watermark.py ``--generated``.

One ``Pipeline.from_pretrained`` in this process, then ``pipe.generate(...)`` and
``result.save(...mp4)`` per clip: the code path of ``kinetoscope generate``, so every clip is
watermarked by the pipeline and written as ``kinetoscope generate`` writes it. Prompts are
world captions (short and detailed in turn) of every scenario, each clip at one of the
watermark benchmark's sizes (rounded to the model's grid), its own seed, ``--frames`` frames.
``clips.json`` beside the videos records the model id and every clip's prompt, size and seed;
``--sheet PNG`` saves the first, middle and last frame of the first clips, to show what they hold.

    python benchmarks/generate_clips.py --model runs/dit-tiny/final --n 200 --out generated/ --sheet sheet.png
    python benchmarks/bench_watermark.py --generated generated/ --model-id "$(jq -r .model_id generated/clips.json)"
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy and torch load their BLAS.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_watermark import SIZES, WORLD_SCENARIOS
from PIL import Image

from kinetoscope.files import atomic_write_json
from kinetoscope.io import read_video, write_image
from kinetoscope.pipeline import Pipeline
from kinetoscope.pipeline.limits import nearest_multiple
from kinetoscope.progress import ProgressBar
from kinetoscope.world import clip_seed, describe, sample_state


def clip_request(index: int, seed: int, frames: int, size_multiple: int) -> dict:
    """Scenario, prompt, size and seed of clip ``index``: a world caption of that scenario at that size."""
    width, height = (max(size_multiple, nearest_multiple(side, size_multiple)) for side in SIZES[index % len(SIZES)])
    scenario = WORLD_SCENARIOS[index % len(WORLD_SCENARIOS)]
    clip = clip_seed(seed, index)
    short, detailed = describe(sample_state(scenario, seed=clip, width=width, height=height, frames=frames))
    prompt = detailed if index % 2 else short
    return {"scenario": scenario, "prompt": prompt, "width": width, "height": height, "seed": clip}


def contact_sheet(paths: list[Path], scale: int = 2, gap: int = 4) -> np.ndarray:
    """One row per clip: its first, middle and last frame as written, scaled up ``scale`` times, on grey."""
    rows = []
    for path in paths:
        frames = read_video(path).frames
        picked = [frames[0], frames[len(frames) // 2], frames[-1]]
        height, width = picked[0].shape[:2]
        row = np.full((height * scale, 3 * (width * scale + gap), 3), 128, np.uint8)
        for i, frame in enumerate(picked):
            big = Image.fromarray(frame).resize((width * scale, height * scale), Image.Resampling.NEAREST)
            row[:, i * (width * scale + gap) : i * (width * scale + gap) + width * scale] = np.asarray(big)
        rows.append(row)
    sheet = np.full((sum(r.shape[0] + gap for r in rows), max(r.shape[1] for r in rows), 3), 128, np.uint8)
    top = 0
    for row in rows:
        sheet[top : top + row.shape[0], : row.shape[1]] = row
        top += row.shape[0] + gap
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, required=True, help="Model directory (model_index.json, vae/, dit/, text/)."
    )
    parser.add_argument("--n", type=int, default=200, help="Clips to generate.")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the mp4 files and clips.json.")
    parser.add_argument("--frames", type=int, default=17, help="Frames per clip.")
    parser.add_argument("--steps", type=int, default=30, help="Sampling steps (kinetoscope generate's default).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the whole set; clip i gets clip_seed(seed, i).")
    parser.add_argument("--sheet", type=Path, help="Save a PNG of the first --sheet-clips clips (3 frames each) here.")
    parser.add_argument("--sheet-clips", type=int, default=4, help="Clips shown by --sheet.")
    args = parser.parse_args()
    torch.set_num_threads(1)

    pipe = Pipeline.from_pretrained(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    clips = []
    start = time.perf_counter()
    with ProgressBar(args.n, "generating", unit="clip") as bar:
        for i in range(args.n):
            request = clip_request(i, args.seed, args.frames, pipe.limits.size_multiple)
            result = pipe.generate(
                request["prompt"],
                width=request["width"],
                height=request["height"],
                num_frames=args.frames,
                seed=request["seed"],
                steps=args.steps,
            )
            name = f"{i:03d}-{request['scenario']}.mp4"
            result.save(args.out / name)
            clips.append({"file": name, **request, "notes": result.notes})
            bar.advance(1)
    seconds = time.perf_counter() - start
    atomic_write_json(
        args.out / "clips.json",
        {
            "model": str(args.model),
            "model_id": pipe.model_id,
            "frames": args.frames,
            "steps": args.steps,
            "clips": clips,
        },
    )
    print(f"wrote {args.n} clips of model {pipe.model_id} to {args.out} in {seconds:.0f} s")
    if args.sheet:
        shown = [args.out / clip["file"] for clip in clips[: args.sheet_clips]]
        write_image(args.sheet, contact_sheet(shown))
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
