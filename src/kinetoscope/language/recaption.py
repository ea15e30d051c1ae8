"""Re-caption a dataset: every video or image of a folder or manifest gets a detailed caption.

The result is a JSONL manifest (see :mod:`kinetoscope.data.manifest`) with the new caption in
``caption``; an original caption is kept beside it as ``original_caption``, and
``caption_source`` says what wrote the new one. Files that cannot be read are skipped and
listed, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kinetoscope.data.manifest import ManifestEntry, read_manifest, write_manifest
from kinetoscope.errors import CheckpointError, InvalidInputError, KinetoscopeError
from kinetoscope.progress import ProgressBar

#: Read ``(frames uint8 (T, H, W, 3), fps)`` for each entry and return one caption per entry.
CaptionFn = Callable[[list[tuple[np.ndarray, float, ManifestEntry]]], list[str]]


@dataclasses.dataclass
class RecaptionResult:
    manifest: Path
    written: int
    #: ``(file, reason)`` for every file that could not be read.
    skipped: list[tuple[str, str]]


def collect_entries(source: str | os.PathLike) -> list[ManifestEntry]:
    """The entries of a manifest (a file), or one caption-less entry per video or image in a folder."""
    from kinetoscope.io import is_image_path, is_video_path

    source = Path(source)
    if source.is_file():
        return read_manifest(source)
    if not source.is_dir():
        raise InvalidInputError(
            f"{source} is neither a folder of videos and images nor a manifest file.", param="source"
        )
    files = sorted(p for p in source.iterdir() if p.is_file() and (is_video_path(p) or is_image_path(p)))
    if not files:
        raise InvalidInputError(
            f"Folder {source} holds no video or image files (mp4, gif, webp, png, jpg, ...).", param="source"
        )
    return [ManifestEntry(path=p.absolute(), caption="") for p in files]


def recaption(
    entries: list[ManifestEntry],
    out: str | os.PathLike,
    caption_batch: CaptionFn,
    *,
    caption_source: str,
    max_frames: int | None = None,
    batch_size: int = 8,
) -> RecaptionResult:
    """Caption every entry (see :func:`collect_entries`) with ``caption_batch`` and write the manifest ``out``.

    ``max_frames`` reads only a clip's first frames (the built-in captioner sees no more).
    """
    from kinetoscope.io import read_video

    done: list[ManifestEntry] = []
    skipped: list[tuple[str, str]] = []
    with ProgressBar(len(entries), "caption", unit="file") as bar:
        for start in range(0, len(entries), batch_size):
            batch = []
            for entry in entries[start : start + batch_size]:
                try:
                    video = read_video(entry.path, max_frames=max_frames)
                except (KinetoscopeError, OSError) as e:
                    skipped.append((str(entry.path), str(e)))
                    continue
                batch.append((video.frames, video.fps, entry))
            if batch:
                captions = caption_batch(batch)
                done += [
                    _recaptioned(entry, caption, caption_source) for (_, _, entry), caption in zip(batch, captions)
                ]
            bar.advance(len(entries[start : start + batch_size]))
    path = write_manifest(out, done)
    return RecaptionResult(path, len(done), skipped)


def _recaptioned(entry: ManifestEntry, caption: str, source: str) -> ManifestEntry:
    extra = dict(entry.extra)
    if entry.caption and "original_caption" not in extra:  # a second pass keeps the first original
        extra["original_caption"] = entry.caption
    extra["caption_source"] = source
    return dataclasses.replace(entry, caption=caption, extra=extra)


def builtin_captioner(
    directory: str | os.PathLike, device: str = "cpu", dtype: str | None = None
) -> tuple[CaptionFn, int, str]:
    """``(caption function, frames it reads, source name)`` for a trained captioner directory, run on
    ``device`` in ``dtype`` (float32 unless given; ``auto``: :mod:`kinetoscope.devices`)."""
    import torch

    from kinetoscope.devices import resolve_device, resolve_dtype
    from kinetoscope.io import frames_to_tensor
    from kinetoscope.language.captioner import Captioner, square_frames

    if not Path(directory).is_dir():
        raise CheckpointError(
            f"No captioner at {directory}; train one with `kinetoscope train captioner --config "
            "configs/captioner-world.yaml` and pass its run's final/ folder with --captioner."
        )
    device = resolve_device(device)
    dtype = torch.float32 if dtype is None else resolve_dtype(dtype, device)
    model = Captioner.from_pretrained(directory, device=device, dtype=dtype)
    c = model.config

    def caption_batch(batch: list[tuple[np.ndarray, float, ManifestEntry]]) -> list[str]:
        videos = [square_frames(frames_to_tensor(frames), c.image_size, c.frames) for frames, _, _ in batch]
        counts = torch.tensor([v.shape[1] for v in videos])
        pixels = torch.zeros(len(videos), 3, int(counts.max()), c.image_size, c.image_size)
        for i, v in enumerate(videos):
            pixels[i, :, : v.shape[1]] = v
        pixels = pixels.to(device, dtype)
        return [model.tokenizer.decode(ids) for ids in model.generate(pixels, frame_counts=counts.to(device))]

    return caption_batch, c.frames, f"kinetoscope:{Path(directory).name}"


def openai_captioner(backend) -> tuple[CaptionFn, None, str]:
    """``(caption function, None, source name)`` for an :class:`~kinetoscope.language.openai_backend.OpenAIBackend`."""

    def caption_batch(batch: list[tuple[np.ndarray, float, ManifestEntry]]) -> list[str]:
        return [backend.caption_frames(frames, fps, original=entry.caption or None) for frames, fps, entry in batch]

    return caption_batch, None, f"openai:{backend.model}"
