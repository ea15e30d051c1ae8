"""Held-out accuracy of the built-in captioner, per attribute, against the world's ground truth.

Clips are drawn from every in-distribution scenario with a seed training never uses, at the
captioner's own size and frame count. Each caption is decoded greedily, parsed back into
objects (:func:`kinetoscope.language.parse.parse_caption`) and compared with the true caption's
objects, which the world writes from its ground truth (the round trip is exact; see
tests/test_language.py). The baseline beside it is the best a captioner that ignores the
video can do: the most frequent value of each attribute, for every object of the clip.

    python benchmarks/bench_captioner.py --model runs/captioner-world/final --clips 500
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import time
from pathlib import Path

import torch

from kinetoscope.io import frames_to_tensor
from kinetoscope.language.accuracy import (
    ALL_ATTRIBUTES,
    ATTRIBUTES,
    HEADING_HOLDS,
    MARGINS,
    AttributeScore,
    boundary_margin,
    direction_split,
    first_step,
    score_caption,
)
from kinetoscope.language.captioner import Captioner
from kinetoscope.language.parse import ObjectText, SceneText, parse_caption
from kinetoscope.world import sample_clip
from kinetoscope.world.clip import clip_seed

#: Held-out clips: training draws world clips from seeds derived from the training seed.
HELD_OUT_SEED = 20261121
BAR = 0.95


def held_out_clips(count: int, size: int, frames: int, scenario: str = "mixed", seed: int = HELD_OUT_SEED) -> list:
    return [
        sample_clip(scenario, seed=clip_seed(seed, i), width=size, height=size, frames=frames) for i in range(count)
    ]


def caption_clips(model: Captioner, clips: list, batch_size: int) -> list[str]:
    captions: list[str] = []
    for start in range(0, len(clips), batch_size):
        pixels = torch.stack([frames_to_tensor(c.frames) for c in clips[start : start + batch_size]])
        captions += model.caption(pixels)
    return captions


def prior_caption(truths: list[SceneText]) -> dict[str, str | None]:
    """The most frequent value of each attribute over the true objects that have one: the blind baseline."""
    values = collections.defaultdict(collections.Counter)
    for truth in truths:
        for obj in truth.objects:
            for name in ALL_ATTRIBUTES:
                if getattr(obj, name) is not None:
                    values[name][getattr(obj, name)] += 1
    return {name: counter.most_common(1)[0][0] for name, counter in values.items()}


def blind_score(truth: SceneText, prior: dict[str, str | None]) -> AttributeScore:
    guess = SceneText(objects=tuple(ObjectText(**prior) for _ in truth.objects))
    return score_caption(guess, truth)


def plainly_shown(state: dict, index: int) -> str:
    """Both splits at once: a heading that holds through frame 1, 6 degrees or more from an edge."""
    plain = first_step(state, index) == HEADING_HOLDS and boundary_margin(state, index) == MARGINS[2]
    return "plain to see (both)" if plain else "turned or near an edge (either)"


def load_captioner(path: str) -> Captioner:
    """A saved captioner, or the EMA weights of a checkpoint (a run directory means its latest)."""
    if (Path(path) / "model.safetensors").is_file() and not (Path(path) / "trainer.json").is_file():
        return Captioner.from_pretrained(path)
    from kinetoscope.train.tasks.captioner import load_checkpoint

    return load_checkpoint(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="models/captioner-world", help="a captioner, a training checkpoint or a run directory"
    )
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument(
        "--seed", type=int, default=HELD_OUT_SEED, help="another held-out set, to check figures chosen on the default one"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--show", type=int, default=3, help="print this many captions beside the truth")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_captioner(args.model)
    c = model.config
    clips = held_out_clips(args.clips, c.image_size, c.frames, seed=args.seed)
    started = time.perf_counter()
    captions = caption_clips(model, clips, args.batch_size)
    seconds = time.perf_counter() - started

    truths = [parse_caption(clip.caption) for clip in clips]
    prior = prior_caption(truths)
    overall, blind = AttributeScore(), AttributeScore()
    by_scenario: dict[str, AttributeScore] = collections.defaultdict(AttributeScore)
    unparsed = 0
    predictions = [parse_caption(caption) for caption in captions]
    for clip, caption, truth, predicted in zip(clips, captions, truths, predictions):
        unparsed += len(predicted.unparsed)
        score = score_caption(predicted, truth, exact=caption == clip.caption)
        overall.add(score)
        by_scenario[clip.state["scenario"]].add(score)
        blind.add(blind_score(truth, prior))

    model_acc, blind_acc = overall.accuracy(), blind.accuracy()
    print(
        f"captioner {args.model}: {model.num_parameters / 1e6:.2f}M parameters, {c.image_size}x{c.image_size}, {c.frames} frames"
    )
    print(
        f"{len(clips)} held-out clips (seed {args.seed}), {overall.objects} objects, "
        f"{len(clips) / seconds:.1f} clips/s greedy decoding on {args.threads} thread(s)"
    )
    print(f"{'attribute':<10} {'captioner':>9} {'blind':>7} {'ratio':>6}  bar {BAR:.0%}")
    for name in ALL_ATTRIBUTES:
        ratio = model_acc[name] / blind_acc[name] if blind_acc[name] else math.nan
        mark = ("pass" if model_acc[name] >= BAR else "FAIL") if name in ATTRIBUTES else ""
        print(f"{name:<10} {model_acc[name]:>9.3f} {blind_acc[name]:>7.3f} {ratio:>6.2f}  {mark}")
    print(
        f"exact captions {overall.exact / len(clips):.3f}; missing objects {overall.missing}, extra {overall.extra}, "
        f"unparsed sentences {unparsed}"
    )
    splits = {
        "where it": direction_split(clips, predictions, first_step),
        "with its heading": direction_split(clips, predictions, boundary_margin),
        "where the heading is": direction_split(clips, predictions, plainly_shown),
    }
    for words, split in splits.items():
        for name, (correct, total) in split.items():
            print(f"direction {words} {name}: {correct / max(total, 1):.3f} of {total} objects")
    print("per scenario: " + ", ".join(f"{n}" for n in ATTRIBUTES))
    for name, score in sorted(by_scenario.items()):
        acc = score.accuracy()
        print(f"  {name:<10} ({score.captions:>3} clips) " + " ".join(f"{acc[a]:.3f}" for a in ATTRIBUTES))
    for clip, caption in list(zip(clips, captions))[: args.show]:
        print(f"\ntrue:  {clip.caption}\nmodel: {caption}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "clips": len(clips),
                    "objects": overall.objects,
                    "accuracy": model_acc,
                    "blind": blind_acc,
                    "exact": overall.exact / len(clips),
                    "missing": overall.missing,
                    "extra": overall.extra,
                    "by_scenario": {n: s.accuracy() for n, s in by_scenario.items()},
                    "direction_by_first_step": splits["where it"],
                    "direction_by_boundary_margin": splits["with its heading"],
                    "direction_plainly_shown": splits["where the heading is"],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
