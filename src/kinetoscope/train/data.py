"""The video data every video task reads: the world stream or a manifest, as the config's data section says."""

from __future__ import annotations

from kinetoscope.data.datasets import CostFn, ManifestSource, ShapeRule, WorldSource
from kinetoscope.data.loader import SampleSource
from kinetoscope.errors import ConfigError
from kinetoscope.train.config import TrainConfig


def shape_rule(config: TrainConfig, size_multiple: int, frame_step: int) -> ShapeRule:
    d = config.data
    return ShapeRule(size_multiple=size_multiple, frame_step=frame_step, max_frames=d.max_frames, max_side=d.max_side)


def video_source(config: TrainConfig, shape: ShapeRule, cost: CostFn) -> SampleSource:
    """World clips rendered on the fly, or a manifest's files, at native size."""
    d = config.data
    if d.source == "world":
        w = d.world
        return WorldSource(config.seed, shape, cost, scenarios=w.scenarios, sizes=w.sizes, frames=w.frames, fps=w.fps)
    if d.source == "manifest":
        if not d.manifest:
            raise ConfigError("data.source is manifest but data.manifest names no file; set data.manifest=PATH.")
        return ManifestSource(d.manifest, config.seed, shape, cost)
    raise ConfigError(
        f"Task {config.task_kind!r} trains on videos: set data.source to world or manifest, not {d.source!r}."
    )
