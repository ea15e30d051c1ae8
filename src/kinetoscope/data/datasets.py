"""Video samples at native size: read from a JSONL manifest, or rendered from the world on the fly.

Both are index-addressed :class:`~kinetoscope.data.loader.SampleSource` s: sample ``i`` is a
pure function of ``(seed, i)``, and its cost (tokens or pixels) is known before it is loaded,
from the manifest's metadata (or a cheap probe) or from the world's drawn clip spec.
A sample keeps its own size, duration and aspect ratio; :class:`ShapeRule` only cuts it to
what the model accepts (``1 + k * temporal`` frames, sides a multiple of the model's stride)
and scales down sides above ``max_side``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from kinetoscope.data.manifest import ManifestEntry, read_manifest
from kinetoscope.data.seeding import derive_seed
from kinetoscope.errors import ConfigError, KinetoscopeError, MediaError

#: ``cost(frames, height, width)`` of a fitted sample: latent tokens, pixels, ...
CostFn = Callable[[int, int, int], int]


@dataclasses.dataclass
class VideoSample:
    #: float ``(3, T, H, W)`` in [-1, 1], at the sample's own (fitted) size.
    pixels: torch.Tensor
    caption: str
    source: str


@dataclasses.dataclass(frozen=True)
class ShapeRule:
    """What the model accepts: frame counts ``1 + k * frame_step`` and sides a multiple of ``size_multiple``."""

    size_multiple: int = 8
    frame_step: int = 4
    max_frames: int = 33
    max_side: int = 256

    def fit(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The (frames, height, width) a clip of this shape is cut to; sides 0 mean it is too small."""
        frames = min(frames, self.max_frames)
        frames = 1 + (frames - 1) // self.frame_step * self.frame_step
        scale = min(1.0, self.max_side / max(height, width))
        height, width = (
            _round_down(round(height * scale), self.size_multiple),
            _round_down(round(width * scale), self.size_multiple),
        )
        return frames, height, width

    def apply(self, frames: np.ndarray, description: str) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` -> float ``(3, T', H', W')`` in [-1, 1]: scaled down if needed, centre-cropped."""
        from kinetoscope.io import frames_to_tensor

        t, h, w = self.fit(*frames.shape[:3])
        if h == 0 or w == 0:
            raise MediaError(
                f"{description} is {frames.shape[2]}x{frames.shape[1]}, smaller than the model's "
                f"{self.size_multiple}-pixel stride."
            )
        x = frames_to_tensor(frames[:t])
        scale = min(1.0, self.max_side / max(frames.shape[1], frames.shape[2]))
        if scale < 1.0:
            size = (round(frames.shape[1] * scale), round(frames.shape[2] * scale))
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp_(-1.0, 1.0)
        top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        return x[:, :, top : top + h, left : left + w].contiguous()


def _round_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


class ManifestSource:
    """The entries of a JSONL manifest, in a fresh seeded order every epoch, endlessly.

    Files are read in worker processes; one that cannot be read (missing, corrupt, too small)
    raises a :class:`MediaError`, and the loader skips and lists it.
    """

    def __init__(self, manifest: str | os.PathLike, seed: int, shape: ShapeRule, cost: CostFn):
        self.path = Path(manifest)
        self.entries: list[ManifestEntry] = read_manifest(self.path)
        if not self.entries:
            raise ConfigError(f"Manifest {self.path} has no entries to train on.")
        self.seed = seed
        self.shape = shape
        self.cost_of_shape = cost
        self._metadata: dict[int, tuple[int, int, int, float | None] | None] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, index: int) -> ManifestEntry:
        epoch, offset = divmod(index, len(self.entries))
        return self.entries[_epoch_order(self.seed, epoch, len(self.entries))[offset]]

    def _shape_of(self, entry_index: int) -> tuple[int, int, int, float | None] | None:
        """(frames, height, width, fps) from the manifest, else probed once; None if unreadable."""
        if entry_index not in self._metadata:
            e = self.entries[entry_index]
            if e.frames and e.width and e.height:
                self._metadata[entry_index] = (e.frames, e.height, e.width, e.fps)
            else:
                from kinetoscope.io import probe

                try:
                    info = probe(e.path)
                    self._metadata[entry_index] = (info.num_frames, info.height, info.width, info.fps)
                except (KinetoscopeError, OSError):
                    self._metadata[entry_index] = None
        return self._metadata[entry_index]

    def cost(self, index: int) -> int:
        epoch, offset = divmod(index, len(self.entries))
        shape = self._shape_of(int(_epoch_order(self.seed, epoch, len(self.entries))[offset]))
        if shape is None:
            return 0  # unreadable: loading it fails and lists it
        t, h, w = self.shape.fit(*shape[:3])
        return self.cost_of_shape(t, h, w) if h and w else 0

    def load(self, index: int) -> VideoSample:
        from kinetoscope.io import read_video

        e = self.entry(index)
        if not e.path.exists():
            raise MediaError(f"{e.path} does not exist.")
        start = None
        if e.frames and e.fps and e.frames > self.shape.max_frames:
            # A long clip: a window at a start fixed by (seed, index), so every epoch sees new parts.
            first = np.random.default_rng(derive_seed(self.seed, "start", index)).integers(
                e.frames - self.shape.max_frames + 1
            )
            start = float(first) / e.fps
        video = read_video(e.path, start=start, max_frames=self.shape.max_frames)
        return VideoSample(self.shape.apply(video.frames, str(e.path)), e.caption, str(e.path))

    def describe(self, index: int) -> str:
        return str(self.entry(index).path)


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng(derive_seed(seed, "epoch", epoch)).permutation(n)


@dataclasses.dataclass(frozen=True)
class WorldClipSpec:
    scenario: str
    width: int
    height: int
    frames: int
    fps: float
    seed: int


class WorldSource:
    """Endless clips of the procedural world, rendered when loaded (in loader workers).

    Sample ``i`` draws its scenario, size and frame count from the configured choices with a
    seed derived from ``(seed, i)``, so sizes, durations and aspect ratios vary from sample to
    sample and the cost is known without rendering.
    """

    def __init__(
        self,
        seed: int,
        shape: ShapeRule,
        cost: CostFn,
        *,
        scenarios: Sequence[str],
        sizes: Sequence[tuple[int, int]],
        frames: Sequence[int],
        fps: float,
    ):
        from kinetoscope.world import SCENARIOS

        unknown = [s for s in scenarios if s not in SCENARIOS]
        if unknown or not scenarios:
            raise ConfigError(
                f"data.world.scenarios must name scenarios from {', '.join(SCENARIOS)}, got {list(scenarios)}."
            )
        if not sizes or not frames:
            raise ConfigError("data.world.sizes and data.world.frames must each list at least one choice.")
        for w, h in sizes:
            if not shape.fit(1, h, w)[1] or not shape.fit(1, h, w)[2]:
                raise ConfigError(f"World size {w}x{h} is smaller than the model's {shape.size_multiple}-pixel stride.")
        self.seed = seed
        self.shape = shape
        self.cost_of_shape = cost
        self.scenarios = tuple(scenarios)
        self.sizes = tuple(tuple(s) for s in sizes)
        self.frames = tuple(frames)
        self.fps = fps

    def spec(self, index: int) -> WorldClipSpec:
        rng = np.random.default_rng(derive_seed(self.seed, "world", index))
        scenario = self.scenarios[rng.integers(len(self.scenarios))]
        width, height = self.sizes[rng.integers(len(self.sizes))]
        frames = self.frames[rng.integers(len(self.frames))]
        t, h, w = self.shape.fit(frames, height, width)
        return WorldClipSpec(scenario, w, h, t, self.fps, int(rng.integers(2**63 - 1)))

    def cost(self, index: int) -> int:
        s = self.spec(index)
        return self.cost_of_shape(s.frames, s.height, s.width)

    def load(self, index: int) -> VideoSample:
        from kinetoscope.io import frames_to_tensor
        from kinetoscope.world import sample_clip

        s = self.spec(index)
        clip = sample_clip(s.scenario, seed=s.seed, width=s.width, height=s.height, frames=s.frames, fps=s.fps)
        return VideoSample(frames_to_tensor(clip.frames), clip.caption, f"world:{s.scenario}:{s.seed}")

    def describe(self, index: int) -> str:
        s = self.spec(index)
        return f"world clip {index} ({s.scenario}, seed {s.seed})"

    def captions(self, count: int) -> list[str]:
        """Captions of the first ``count`` clips (for training a tokenizer before the run)."""
        from kinetoscope.world import sample_clip

        out = []
        for i in range(count):
            s = self.spec(i)
            out.append(sample_clip(s.scenario, seed=s.seed, width=8, height=8, frames=s.frames, fps=s.fps).caption)
        return out


def collate_videos(samples: list[VideoSample]) -> list[VideoSample]:
    """Native-size samples are not stacked: a batch is the list, grouped by shape where a model wants it."""
    return samples


def group_by_shape(samples: Sequence[VideoSample]) -> list[tuple[torch.Tensor, list[int]]]:
    """Stack samples of equal shape: ``[(pixels (B, 3, T, H, W), their indices in samples), ...]``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(tuple(s.pixels.shape), []).append(i)
    return [(torch.stack([samples[i].pixels for i in idx]), idx) for idx in groups.values()]
