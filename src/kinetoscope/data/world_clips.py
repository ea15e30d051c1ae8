"""Write a set of world clips as a dataset: media files, ground-truth JSON and a JSONL manifest.

It lives in ``data`` (which knows the world) so that the world never imports ``data``: the
layers run one way.

``out/clip_00000.mp4`` (``.png`` when a clip has one frame), ``out/clip_00000.json`` (its
ground-truth state) and ``out/manifest.jsonl`` (one line a clip; see
:mod:`kinetoscope.data.manifest`). Clip ``i`` is drawn with :func:`clip_seed(seed, i)
<kinetoscope.world.clip.clip_seed>`, so the first clips are the same whatever ``n`` is, and
the same arguments give a byte-identical manifest and state files.
"""

from __future__ import annotations

import json
from pathlib import Path

from kinetoscope.data.manifest import ManifestEntry, write_manifest
from kinetoscope.errors import InvalidInputError
from kinetoscope.files import atomic_write_text
from kinetoscope.progress import ProgressBar
from kinetoscope.world.clip import clip_seed, sample_clip
from kinetoscope.world.entities import ClipSpec
from kinetoscope.world.scenarios import SCENARIOS

MANIFEST_NAME = "manifest.jsonl"


def write_world_dataset(
    out: str | Path, *, scenario: str, n: int, width: int, height: int, frames: int, fps: float, seed: int
) -> Path:
    """Render ``n`` clips of ``scenario`` into ``out`` and return the manifest's path."""
    from kinetoscope.io import write_image, write_video

    if scenario not in SCENARIOS:
        raise InvalidInputError(
            f"Unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}.", param="scenario"
        )
    if not (isinstance(n, int) and n >= 1):
        raise InvalidInputError(f"The number of clips must be at least 1, got {n!r}.", param="n")
    ClipSpec(width, height, frames, fps)  # validates before anything is written
    out = Path(out).absolute()  # so the manifest writes media paths relative to itself
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with ProgressBar(n, f"world {scenario}", unit="clip") as bar:
        for index in range(n):
            seed_i = clip_seed(seed, index)
            clip = sample_clip(scenario, seed=seed_i, width=width, height=height, frames=frames, fps=fps)
            stem = out / f"clip_{index:05d}"
            if frames == 1:
                media = write_image(stem.with_suffix(".png"), clip.frames[0])
            else:
                media = write_video(stem.with_suffix(".mp4"), clip.frames, fps)
            state_path = stem.with_suffix(".json")
            atomic_write_text(state_path, json.dumps(clip.state, sort_keys=True, separators=(",", ":")) + "\n")
            entries.append(
                ManifestEntry(
                    path=media,
                    caption=clip.caption,
                    short_caption=clip.short_caption,
                    fps=clip.fps,
                    width=width,
                    height=height,
                    frames=frames,
                    state_path=state_path,
                    extra={"scenario": clip.state["scenario"], "seed": seed_i},
                )
            )
            bar.advance()
    return write_manifest(out / MANIFEST_NAME, entries)
