"""Was a file made by kinetoscope, and by which model? The watermark and the C2PA manifest.

The watermark carries a 16-bit hash of the model id; :func:`model_registry` maps hashes back
to the ids known here: the bundled model directories, the model id a C2PA manifest names, and
any the caller adds. A model's id is ``model_index.json``'s ``model_id`` if present, else its
directory name (:func:`kinetoscope.model_dir.model_id_for`): the generation pipeline watermarks with that id.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kinetoscope.bundled import bundled_models
from kinetoscope.io import probe, read_video
from kinetoscope.model_dir import model_id_for
from kinetoscope.safety.provenance import read_provenance
from kinetoscope.safety.watermark import MAX_FRAMES, model_hash, read_watermark


@dataclasses.dataclass(frozen=True)
class Detection:
    """``watermarked``: the kinetoscope watermark is there; ``model_hash``: the 16-bit hash of the
    model id it carries (None if too damaged to read); ``model_id``: that model's id when its hash
    is known here; ``confidence``: one
    minus a bound on the chance that an unmarked file looks this marked (0.999 at the threshold);
    ``score``: -log10 of that chance (3 at the threshold, about 25 for an intact mark);
    ``c2pa``: the manifest summary or None."""

    watermarked: bool
    model_id: str | None
    confidence: float
    frames_checked: int
    c2pa: dict[str, Any] | None
    score: float
    model_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_registry(extra_ids: Iterable[str] = ()) -> dict[int, str]:
    """16-bit watermark hash -> model id, for the bundled models and ``extra_ids``."""
    ids = [model_id_for(p) for p in bundled_models()] + [i for i in extra_ids if i]
    return {model_hash(model_id): model_id for model_id in ids}


def detect(
    path: str | os.PathLike, model_ids: Iterable[str] = (), trust_anchors: str | os.PathLike | None = None
) -> Detection:
    """Look for kinetoscope's watermark in a video or image and read its C2PA manifest, if any."""
    path = Path(path)
    manifest = read_provenance(path, trust_anchors=trust_anchors)
    registry = model_registry([*model_ids, *([manifest["model_id"]] if manifest and manifest.get("model_id") else [])])
    reading = read_watermark(_sample_frames(path), known_hashes=registry)
    readable = reading.detected and reading.model_hash is not None
    return Detection(
        watermarked=reading.detected,
        model_id=registry.get(reading.model_hash) if readable else None,
        confidence=1.0 - reading.p_value,
        frames_checked=reading.frames_checked,
        c2pa=manifest,
        score=round(reading.score, 2),
        model_hash=f"{reading.model_hash:04x}" if readable else None,
    )


def _sample_frames(path: Path) -> np.ndarray:
    """At most MAX_FRAMES frames spread over the file (all of them for a short clip or an image)."""
    info = probe(path)
    fps = None if info.num_frames <= MAX_FRAMES else MAX_FRAMES / info.duration
    return read_video(path, fps=fps).frames
