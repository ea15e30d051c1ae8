"""A clip of the world: frames, the ground truth they were drawn from, and two captions."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kinetoscope.world.captions import describe
from kinetoscope.world.entities import ClipSpec, Scene
from kinetoscope.world.render import render_state
from kinetoscope.world.scenarios import generate_scene
from kinetoscope.world.truth import build_state


@dataclasses.dataclass(frozen=True, eq=False)
class Clip:
    """``frames`` uint8 ``(T, H, W, 3)``; ``state`` the ground truth (see :mod:`.truth`);
    ``caption`` the detailed caption (what models train on) and ``short_caption``."""

    frames: np.ndarray
    state: dict[str, Any]
    caption: str
    short_caption: str

    @property
    def fps(self) -> float:
        return self.state["fps"]

    @property
    def width(self) -> int:
        return self.state["width"]

    @property
    def height(self) -> int:
        return self.state["height"]

    @property
    def num_frames(self) -> int:
        return self.state["frames"]


def render_clip(
    scene: Scene,
    *,
    width: int,
    height: int,
    frames: int,
    fps: float,
    scenario: str = "custom",
    seed: int | None = None,
) -> Clip:
    """Simulate ``scene``, draw it at ``width x height`` for ``frames`` frames at ``fps``, and caption it."""
    spec = ClipSpec(width, height, frames, fps)
    state = build_state(scene, spec, scenario=scenario, seed=seed)
    short, detailed = describe(state)
    return Clip(render_state(state), state, detailed, short)


def sample_clip(
    scenario: str, *, seed: int, width: int = 128, height: int = 128, frames: int = 32, fps: float = 10.0
) -> Clip:
    """A random clip of a named scenario (see ``SCENARIOS``); the same seed gives the same clip."""
    state = sample_state(scenario, seed=seed, width=width, height=height, frames=frames, fps=fps)
    short, detailed = describe(state)
    return Clip(render_state(state), state, detailed, short)


def sample_state(
    scenario: str, *, seed: int, width: int = 128, height: int = 128, frames: int = 32, fps: float = 10.0
) -> dict[str, Any]:
    """The ground truth of ``sample_clip(...)`` with the same arguments, without drawing a pixel.

    Cheap: for captions (``describe(state)``), statistics or evaluation. The frame size
    matters even here, since a wider frame sees (and places objects in) more of the world.
    """
    spec = ClipSpec(width, height, frames, fps)
    name, scene = generate_scene(scenario, np.random.default_rng(seed), spec)
    return build_state(scene, spec, scenario=name, seed=seed)


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip ``index`` in a set drawn with ``seed``: independent of how many are drawn."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
