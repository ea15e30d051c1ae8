"""Latent datasets: clips encoded once by a frozen VAE, so the transformer's step never renders or encodes.

On a CPU the VAE's encode costs more than the transformer's training step, so a transformer
trains on latents written once. Format ``kinetoscope-latents``, version 1, a directory of:

- ``index.json``: ``{"format", "version", "samples", "shards": [names], "vae": {...}}``, where
  ``vae`` records the encoder's ``latent_channels``, ``spatial_compression``,
  ``temporal_compression`` and ``digest`` (``vae_digest``: what fixes the latents it writes), so a
  trainer can refuse latents of another encoder. Written last: a directory without it is unfinished.
- ``shard-00000.safetensors``, ...: for sample ``k`` of the shard, ``latent.k`` (float16,
  ``(C, t, h, w)``, normalised as ``CausalVAE.encode`` returns it) and ``foreground.k`` (uint8,
  ``(t, h, w)``: 1 where the latent cell covers pixels unlike the clip's background); the
  safetensors metadata ``records`` is a JSON list with one object per sample: ``caption``,
  ``source``, ``frames``, ``height``, ``width``, ``fps`` and, when known, ``scenario`` and
  ``state`` (the world's ground truth).

Samples are any size, duration and aspect ratio: nothing is cropped or padded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinetoscope.data.batching import latent_tokens
from kinetoscope.data.seeding import derive_seed
from kinetoscope.errors import ConfigError, KinetoscopeError
from kinetoscope.files import atomic_write_bytes, atomic_write_json

FORMAT = "kinetoscope-latents"
VERSION = 1
INDEX = "index.json"
#: A latent cell is foreground when some pixel under it differs from the clip's median colour by
#: more than this in any channel ([-1, 1] scale; 0.15 of the 0-255 range).
FOREGROUND_THRESHOLD = 0.3


@dataclasses.dataclass
class LatentSample:
    latent: torch.Tensor  # float (C, t, h, w), normalised
    foreground: torch.Tensor  # bool (t, h, w)
    caption: str
    source: str


@dataclasses.dataclass
class EncodeItem:
    """A clip to encode: pixels ``(3, T, H, W)`` in [-1, 1] and what is stored beside its latent."""

    pixels: torch.Tensor
    record: dict[str, Any]


def foreground_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Bool ``(..., T, H, W)`` of videos ``(..., 3, T, H, W)`` in [-1, 1]: pixels that differ from
    their clip's median colour by more than ``FOREGROUND_THRESHOLD`` in some channel (its objects)."""
    background = pixels.flatten(-3).median(dim=-1).values[..., None, None, None]
    return (pixels - background).abs().amax(dim=-4) > FOREGROUND_THRESHOLD


def foreground_cells(pixels: torch.Tensor, spatial: int, temporal: int) -> torch.Tensor:
    """Bool ``(t, h, w)``: latent cells over pixels unlike the clip's median colour.

    Latent frame 0 covers pixel frame 0 alone and frame i covers frames ``temporal*(i-1)+1 ..
    temporal*i`` (the VAE's causal layout); a cell covers ``spatial x spatial`` pixels.
    """
    differs = foreground_pixels(pixels)
    first, rest = differs[:1], differs[1:]
    t, h, w = rest.shape
    rest = rest.reshape(t // temporal, temporal, h, w).any(dim=1) if t else rest
    frames = torch.cat([first, rest]).float()[None]
    return torch.nn.functional.max_pool2d(frames, spatial)[0].bool()


def vae_digest(vae_dir: str | os.PathLike) -> str:
    """16 hex digits of the SHA-256 of what fixes a VAE's latents: its encoder's weights in half
    precision (the precision latents are stored in, and bundles keep) and its latent statistics.

    The decoder is left out, so a VAE whose decoder alone trained on (``task.train_encoder:
    false``) still reads the latents its encoder wrote, and so does its half-precision bundle.
    """
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(Path(vae_dir) / "model.safetensors", framework="pt") as f:
        for name in sorted(k for k in f.keys() if k.startswith("encoder.")):
            digest.update(name.encode())
            digest.update(f.get_tensor(name).to(torch.float16).numpy().tobytes())
    config = json.loads((Path(vae_dir) / "config.json").read_text())
    digest.update(json.dumps([config.get("latent_mean"), config.get("latent_std")]).encode())
    return digest.hexdigest()[:16]


class LatentWriter:
    """Collects encoded samples and writes them shard by shard; ``close()`` writes the index."""

    def __init__(self, out: str | os.PathLike, vae_info: dict[str, Any], shard_size: int = 1024):
        self.out = Path(out)
        if (self.out / INDEX).exists():
            raise KinetoscopeError(f"{self.out} already holds a latent dataset; choose another --out or remove it.")
        self.out.mkdir(parents=True, exist_ok=True)
        self.vae_info = vae_info
        self.shard_size = shard_size
        self.shards: list[str] = []
        self.samples = 0
        self._tensors: dict[str, torch.Tensor] = {}
        self._records: list[dict[str, Any]] = []

    def add(self, latent: torch.Tensor, foreground: torch.Tensor, record: dict[str, Any]) -> None:
        k = len(self._records)
        self._tensors[f"latent.{k}"] = latent.detach().to("cpu", torch.float16).contiguous()
        self._tensors[f"foreground.{k}"] = foreground.to("cpu", torch.uint8).contiguous()
        self._records.append(record)
        if len(self._records) == self.shard_size:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save

        if not self._records:
            return
        name = f"shard-{len(self.shards):05d}.safetensors"
        metadata = {"records": json.dumps(self._records, separators=(",", ":"))}
        atomic_write_bytes(self.out / name, save(self._tensors, metadata=metadata))
        self.shards.append(name)
        self.samples += len(self._records)
        self._tensors, self._records = {}, []

    def close(self) -> Path:
        self._flush()
        index = {"format": FORMAT, "version": VERSION, "samples": self.samples, "shards": self.shards, "vae": self.vae_info}
        atomic_write_json(self.out / INDEX, index)
        return self.out / INDEX


def encode_items(
    items: Iterable[EncodeItem], vae, writer: LatentWriter, *, batch_size: int = 16, progress=None
) -> int:
    """Encode ``items`` with ``vae`` in batches of equal shape and write them; returns how many."""
    pending: dict[tuple[int, ...], list[EncodeItem]] = {}
    device = next(vae.parameters()).device
    written = 0

    def encode(group: list[EncodeItem]) -> None:
        nonlocal written
        with torch.no_grad():
            z = vae.encode(torch.stack([item.pixels for item in group]).to(device))
        for item, zi in zip(group, z):
            fg = foreground_cells(item.pixels, vae.spatial_compression, vae.temporal_compression)
            writer.add(zi, fg, item.record)
        written += len(group)
        if progress is not None:
            progress(len(group))

    for item in items:
        group = pending.setdefault(tuple(item.pixels.shape), [])
        group.append(item)
        if len(group) == batch_size:
            encode(pending.pop(tuple(item.pixels.shape)))
    for group in pending.values():
        encode(group)
    return written


def world_items(
    n: int, *, seed: int, scenarios: tuple[str, ...], sizes: tuple[tuple[int, int], ...], frames: tuple[int, ...], fps: float
) -> Iterator[EncodeItem]:
    """``n`` world clips, each drawn (scenario, size, frame count) from the choices by ``(seed, i)``, with ground truth."""
    from kinetoscope.io import frames_to_tensor
    from kinetoscope.world import sample_clip

    for i in range(n):
        rng = np.random.default_rng(derive_seed(seed, "latents", i))
        scenario = scenarios[rng.integers(len(scenarios))]
        width, height = sizes[rng.integers(len(sizes))]
        count = frames[rng.integers(len(frames))]
        clip_seed = int(rng.integers(2**63 - 1))
        clip = sample_clip(scenario, seed=clip_seed, width=width, height=height, frames=count, fps=fps)
        record = {
            "caption": clip.caption,
            "source": f"world:{clip.state['scenario']}:{clip_seed}",
            "frames": count,
            "height": height,
            "width": width,
            "fps": fps,
            "scenario": clip.state["scenario"],
            "state": clip.state,
        }
        yield EncodeItem(frames_to_tensor(clip.frames), record)


def manifest_items(manifest: str | os.PathLike, shape, *, skipped: list[tuple[str, str]]) -> Iterator[EncodeItem]:
    """Every readable entry of a JSONL manifest, cut by ``shape`` (a ``ShapeRule``); unreadable ones go to ``skipped``."""
    from kinetoscope.data.manifest import read_manifest
    from kinetoscope.io import read_video

    entries = read_manifest(manifest)
    if not entries:
        raise ConfigError(f"Manifest {manifest} has no entries to encode.")
    for entry in entries:
        try:
            video = read_video(entry.path, max_frames=shape.max_frames)
            pixels = shape.apply(video.frames, str(entry.path))
        except (KinetoscopeError, OSError) as e:
            skipped.append((str(entry.path), str(e)))
            continue
        state = entry.state
        if state is None and entry.state_path is not None and entry.state_path.is_file():
            state = json.loads(entry.state_path.read_text())
        record = {
            "caption": entry.caption,
            "source": str(entry.path),
            "frames": int(pixels.shape[1]),
            "height": int(pixels.shape[2]),
            "width": int(pixels.shape[3]),
            "fps": entry.fps or video.fps,
            **({"scenario": entry.extra["scenario"]} if "scenario" in entry.extra else {}),
            **({"state": state} if state is not None else {}),
        }
        yield EncodeItem(pixels, record)


class LatentDataset:
    """A latent dataset directory, read lazily: shards are memory-mapped when first used (per process)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise ConfigError(f"{self.path} is not a latent dataset: {INDEX} is missing (write one with `kinetoscope data encode`).")
        self.index = json.loads(index_path.read_text())
        if self.index.get("format") != FORMAT or self.index.get("version") != VERSION:
            raise ConfigError(
                f"{self.path} is format {self.index.get('format')!r} version {self.index.get('version')!r}; "
                f"this kinetoscope reads {FORMAT!r} version {VERSION}."
            )
        self.records: list[dict[str, Any]] = []
        self._where: list[tuple[int, int]] = []
        for s, name in enumerate(self.index["shards"]):
            records = json.loads(_shard_metadata(self.path / name)["records"])
            self.records += records
            self._where += [(s, k) for k in range(len(records))]
        self._handles: dict[int, Any] = {}

    @property
    def vae(self) -> dict[str, Any]:
        return self.index["vae"]

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}  # open files stay in the process that opened them

    def __getitem__(self, i: int) -> LatentSample:
        from safetensors import safe_open

        shard, k = self._where[i]
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.path / self.index["shards"][shard]), "pt")
        f = self._handles[shard]
        r = self.records[i]
        return LatentSample(
            f.get_tensor(f"latent.{k}").float(), f.get_tensor(f"foreground.{k}").bool(), r["caption"], r["source"]
        )


def _shard_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


class LatentSource:
    """A latent dataset as a trainer's sample source: a fresh seeded order every epoch, endlessly."""

    def __init__(self, path: str | os.PathLike, seed: int, patch: tuple[int, int, int]):
        self.dataset = LatentDataset(path)
        if not len(self.dataset):
            raise ConfigError(f"Latent dataset {path} has no samples to train on.")
        self.seed = seed
        self.patch = patch

    def __len__(self) -> int:
        return len(self.dataset)

    def _sample_index(self, index: int) -> int:
        from kinetoscope.data.datasets import _epoch_order

        epoch, offset = divmod(index, len(self.dataset))
        return int(_epoch_order(self.seed, epoch, len(self.dataset))[offset])

    def cost(self, index: int) -> int:
        r, v = self.dataset.records[self._sample_index(index)], self.dataset.vae
        return latent_tokens(
            r["frames"], r["height"], r["width"],
            spatial=v["spatial_compression"], temporal=v["temporal_compression"], patch=self.patch,
        )

    def load(self, index: int) -> LatentSample:
        return self.dataset[self._sample_index(index)]

    def describe(self, index: int) -> str:
        return self.dataset.records[self._sample_index(index)]["source"]

    def captions(self, count: int) -> list[str]:
        return [r["caption"] for r in self.dataset.records[:count]]


def write_latent_dataset(
    items: Iterable[EncodeItem], vae_dir: str | os.PathLike, out: str | os.PathLike, *, total: int | None,
    batch_size: int = 16, shard_size: int = 1024, device: str = "cpu",
) -> Path:
    """Encode ``items`` with the VAE saved in ``vae_dir`` (or a model directory's ``vae/``) into a
    latent dataset at ``out``, with a progress bar; returns the index's path."""
    from kinetoscope.progress import ProgressBar
    from kinetoscope.vae.evaluate import load_vae

    vae = load_vae(vae_dir, device=device).eval().requires_grad_(False)
    vae_dir = Path(vae_dir) / "vae" if (Path(vae_dir) / "vae").is_dir() else Path(vae_dir)
    info = {
        "latent_channels": vae.latent_channels,
        "spatial_compression": vae.spatial_compression,
        "temporal_compression": vae.temporal_compression,
        "digest": vae_digest(vae_dir),
    }
    writer = LatentWriter(out, info, shard_size)
    with ProgressBar(total, "encode", unit="clip") as bar:
        encode_items(items, vae, writer, batch_size=batch_size, progress=bar.advance)
    return writer.close()
