"""The procedural physical world: scenes, exact physics, an anti-aliased renderer and captions.

``sample_clip("collision", seed=0)`` draws a named scenario (see ``SCENARIOS``);
``render_clip(Scene(...), width=..., height=..., frames=..., fps=...)`` films a scene you
build. Each :class:`Clip` carries uint8 frames, its ground-truth state (documented in
:mod:`kinetoscope.world.truth` and docs/world.md) and a short and a detailed caption.
World units: x right, y up; the frame's height spans 10 units; pixel row 0 is the top.
"""

from kinetoscope.world.captions import describe
from kinetoscope.world.clip import Clip, clip_seed, render_clip, sample_clip, sample_state
from kinetoscope.world.entities import Background, Body, Camera, ClipSpec, Occluder, Scene
from kinetoscope.world.render import render_state
from kinetoscope.world.scenarios import SCENARIOS
from kinetoscope.world.truth import STATE_VERSION, build_state

__all__ = [
    "SCENARIOS",
    "STATE_VERSION",
    "Background",
    "Body",
    "Camera",
    "Clip",
    "ClipSpec",
    "Occluder",
    "Scene",
    "build_state",
    "clip_seed",
    "describe",
    "render_clip",
    "render_state",
    "sample_clip",
    "sample_state",
]
