"""The prompt expander: a user's short prompt -> a detailed caption in the style the models trained on.

The built-in expander reads the prompt into the world's vocabulary (:func:`parse_prompt`),
draws scenes from the world's own prior (its scenario generators) with a seeded generator,
imposes what the prompt says on them (colours, shapes, sizes, headings, speeds, background)
and keeps the first one whose caption, written by the world's caption writer, agrees with
every claim of the prompt. The style is therefore exactly the training captions', everything
the prompt leaves open comes from the prior, and nothing the user said is contradicted.

Words outside the vocabulary are reported and kept: the prompt itself ends the expansion.
When no scene of the world can satisfy the prompt, the expansion is the prompt unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from kinetoscope.data.seeding import derive_seed
from kinetoscope.errors import InvalidInputError, KinetoscopeError
from kinetoscope.language.parse import ObjectText, SceneText, parse_caption
from kinetoscope.language.prompt import parse_prompt
from kinetoscope.world.captions import detailed_caption
from kinetoscope.world.entities import Background, Body, ClipSpec, Scene
from kinetoscope.world.scenarios import MIXED, generate_scene
from kinetoscope.world.truth import build_state
from kinetoscope.world.vocabulary import (
    DIRECTIONS,
    FLOOR_COLORS,
    OBJECT_COLORS,
    VIEW_HEIGHT,
    place_span,
    word_range,
)

if TYPE_CHECKING:
    from kinetoscope.language.openai_backend import OpenAIBackend

#: Scenes drawn before the expander gives up and returns the prompt as it is.
MAX_TRIES = 300
#: Upper ends for the open-ended size and speed words, and the lower end for "tiny".
_MAX_RADIUS, _MIN_RADIUS, _MAX_SPEED = 2.0, 0.3, 6.0


@dataclasses.dataclass(frozen=True)
class Expansion:
    prompt: str
    #: The text to condition on: a caption in the training style (the prompt itself when it could not be expanded).
    caption: str
    #: Words of the prompt outside the world's vocabulary (kept at the end of ``caption``).
    unknown_words: tuple[str, ...]
    #: The world scenario the caption was drawn from; None when the caption is not the world's.
    scenario: str | None
    seed: int


def expand_prompt(
    prompt: str,
    seed: int = 0,
    backend: str | OpenAIBackend = "builtin",
    *,
    width: int = 128,
    height: int = 128,
    frames: int = 32,
    fps: float = 10.0,
) -> Expansion:
    """Expand ``prompt`` into a detailed caption; same prompt, seed and clip shape, same caption.

    ``backend`` is ``"builtin"`` or an :class:`~kinetoscope.language.openai_backend.OpenAIBackend`.
    The clip shape matters to the built-in expander: event frames and what fits in the view
    depend on it.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError(
            "The prompt is empty; write what the video should show, for example 'a red ball bounces'.", param="prompt"
        )
    prompt = " ".join(prompt.split())
    text = parse_prompt(prompt)
    if backend == "builtin":
        caption, scenario = _expand_in_world(text, seed, ClipSpec(width, height, frames, fps))
        if caption is None:
            return Expansion(prompt, prompt, text.unknown_words, None, seed)
        if text.unknown_words:
            caption = f"{caption} {prompt[0].upper()}{prompt[1:].rstrip('.')}."
        return Expansion(prompt, caption, text.unknown_words, scenario, seed)
    if isinstance(backend, str):
        raise InvalidInputError(
            f"Unknown expander backend {backend!r}; use 'builtin' or an OpenAI-compatible endpoint.", param="backend"
        )
    return Expansion(prompt, backend.expand(prompt, seed=seed), text.unknown_words, None, seed)


def _expand_in_world(text: SceneText, seed: int, spec: ClipSpec) -> tuple[str | None, str | None]:
    """The caption of the first world scene (drawn with ``seed``) that agrees with ``text``."""
    for attempt in range(MAX_TRIES):
        rng = np.random.default_rng(derive_seed(seed, "expand", attempt))
        candidates = _scenarios(text)
        name, scene = generate_scene(candidates[int(rng.integers(len(candidates)))], rng, spec)
        scene = _impose(scene, text, rng, spec.view_width)
        if scene is None:
            continue
        try:
            state = build_state(scene, spec, scenario=name, seed=None)
        except KinetoscopeError:
            continue
        if any(all(v == "out" for v in obj["visibility"]) for obj in state["objects"]):
            continue  # an object the frames never show: its caption would promise what no frame has
        caption = detailed_caption(state)
        if agrees(text, parse_caption(caption)):
            return caption, name
    return None, None


def _scenarios(text: SceneText) -> tuple[str, ...]:
    """The scenarios whose scenes can show what ``text`` asks for (the whole prior when it asks nothing special)."""
    motions = {o.motion for o in text.objects}
    kinds = {e.kind for e in text.events}
    if "player" in motions:
        return ("agent",)
    if "paints" in motions:
        return ("paint",)
    if text.camera == "pan":
        return ("pan",)
    if text.occluder is not None or kinds & {"occluded", "reappear"}:
        return ("occlusion",)
    if kinds & {"exit", "enter"}:
        return ("crossing",)
    falling = bool(motions & {"falls", "thrown"})
    if "collision" in kinds:
        if falling:
            return ("bounce",)
        return ("collision",) if len(text.objects) <= 2 else ("billiards",)
    if "bounce" in kinds:
        return (
            ("bounce",) if falling or any(e.wall in ("floor", None) for e in text.events) else ("bounce", "billiards")
        )
    if falling:
        return ("bounce", "parabola")
    if motions == {"still"}:
        return ("static",)
    if "moves" in motions:
        return ("billiards", "uniform", "crossing")
    return MIXED


# ---------------------------------------------------------------- imposing the prompt on a scene
def _impose(scene: Scene, text: SceneText, rng: np.random.Generator, view_width: float) -> Scene | None:
    """``scene`` with the prompt's objects and scenery imposed, or None when it cannot take them."""
    bodies = _impose_bodies(scene, text.objects, rng, view_width) if text.objects else list(scene.bodies)
    if bodies is None or _overlapping(bodies) or _outside_walls(bodies, scene):
        return None
    background = _impose_background(scene.background, text)
    if background is None or (text.camera == "static" and scene.camera.pan > 0):
        return None
    return dataclasses.replace(scene, bodies=tuple(bodies), background=background)


def _impose_bodies(
    scene: Scene, claims: tuple[ObjectText, ...], rng: np.random.Generator, view_width: float
) -> list[Body] | None:
    """Pair each claimed object with a body of the scene (the player with the agent, the painter with the
    brush) and rewrite that body; bodies no claim names are dropped, so the count is the prompt's."""
    free = [i for i, b in enumerate(scene.bodies) if b.role == "object"]
    special = {b.role: i for i, b in enumerate(scene.bodies) if b.role != "object"}
    pairs: list[tuple[ObjectText, int]] = []
    for claim in claims:
        role = {"player": "agent", "paints": "brush"}.get(claim.motion or "")
        if role is not None:
            if role not in special:
                return None
            pairs.append((claim, special.pop(role)))
        elif free:
            pairs.append((claim, free.pop(0)))
        else:
            return None
    if special:  # the scene's player or brush has no claim: give it to an object the prompt leaves open
        return None
    taken = {c.color for c in claims if c.color}
    bodies = []
    for claim, index in sorted(pairs, key=lambda p: p[1]):
        body = scene.bodies[index]
        color = claim.color or (body.color if body.color not in taken else _unused_color(rng, taken))
        taken.add(color)
        bodies.append(
            dataclasses.replace(
                body,
                color=color,
                shape=claim.shape or body.shape,
                radius=_radius(claim.size, body.radius, rng),
                position=_position(claim.start, body.position, view_width, rng),
                velocity=_velocity(claim, body, scene.gravity, rng),
            )
        )
    return bodies


def _unused_color(rng: np.random.Generator, taken: set[str]) -> str:
    free = [c for c in OBJECT_COLORS if c not in taken]
    return free[int(rng.integers(len(free)))] if free else OBJECT_COLORS[int(rng.integers(len(OBJECT_COLORS)))]


def _radius(size: str | None, radius: float, rng: np.random.Generator) -> float:
    if size is None:
        return radius
    low, high = word_range(size)
    low, high = max(low, _MIN_RADIUS), min(high, _MAX_RADIUS)
    return radius if low <= radius < high else float(rng.uniform(low, high))


def _position(
    start: str | None, position: tuple[float, float], view_width: float, rng: np.random.Generator
) -> tuple[float, float]:
    """A point in the ninth of the first frame's view that the prompt names (kept where it names none)."""
    if start is None:
        return position
    (x0, x1), (y0, y1) = place_span(start, view_width)
    return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))


def _velocity(claim: ObjectText, body: Body, gravity: float, rng: np.random.Generator) -> tuple[float, float]:
    """The body's velocity turned and scaled to the claimed heading and speed (kept where the claim is silent)."""
    if body.role == "agent":
        return body.velocity
    if claim.motion == "still" or (claim.motion == "falls" and claim.direction is None):
        return (0.0, 0.0)
    vx, vy = body.velocity
    speed, angle = math.hypot(vx, vy), math.atan2(vy, vx)
    if claim.speed is not None:
        low, high = word_range(claim.speed)
        speed = speed if low <= speed < high else float(rng.uniform(max(low, 0.1), min(high, _MAX_SPEED)))
    elif claim.motion in ("moves", "thrown", "paints") and speed < 1.0:
        speed = float(rng.uniform(1.0, 4.0))
    if claim.direction is not None:
        sector = DIRECTIONS.index(claim.direction)
        centre = math.radians(45.0 * sector)
        if _angle_gap(angle, centre) >= math.radians(22.5):
            angle = centre + math.radians(float(rng.uniform(-20.0, 20.0)))
    return (speed * math.cos(angle), speed * math.sin(angle))


def _angle_gap(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def _overlapping(bodies: list[Body]) -> bool:
    return any(
        math.dist(a.position, b.position) <= a.radius + b.radius for k, a in enumerate(bodies) for b in bodies[k + 1 :]
    )


def _outside_walls(bodies: list[Body], scene: Scene) -> bool:
    """A grown body that no longer fits between the scene's walls."""
    for b in bodies:
        x, y = b.position
        if "floor" in scene.walls and y - b.radius < scene.floor_y:
            return True
        if "ceiling" in scene.walls and y + b.radius > VIEW_HEIGHT:
            return True
        if "left" in scene.walls and x - b.radius < 0:
            return True
        if "right" in scene.walls and scene.scene_width is not None and x + b.radius > scene.scene_width:
            return True
    return False


def _impose_background(background: Background, text: SceneText) -> Background | None:
    """The scene's background with the prompt's colours in its slots; None when the kind differs."""
    if text.background is not None and text.background != background.kind:
        return None
    if not text.background_colors:
        return background
    colors = list(background.colors)
    sky = [c for c in text.background_colors if c not in FLOOR_COLORS]
    tiles = [c for c in text.background_colors if c in FLOOR_COLORS]
    if background.kind == "floor":
        if len(sky) > 1 or len(tiles) > 2:
            return None
        colors[: len(sky)] = sky
        colors[1 : 1 + len(tiles)] = tiles
    else:
        if tiles or len(sky) > len(colors):
            return None
        colors[: len(sky)] = sky
    if len(set(colors)) < len(colors) and background.kind != "plain":
        return None
    return dataclasses.replace(background, colors=tuple(colors))


# ---------------------------------------------------------------- agreement
def agrees(claims: SceneText, caption: SceneText) -> bool:
    """Whether ``caption`` states everything ``claims`` states (it may say more, never otherwise)."""
    if claims.objects and len(claims.objects) != len(caption.objects):
        return False
    if not _objects_match(claims.objects, caption.objects):
        return False
    if claims.background is not None and claims.background != caption.background:
        return False
    if any(c not in caption.background_colors for c in claims.background_colors):
        return False
    if claims.camera is not None and claims.camera != caption.camera:
        return False
    if claims.occluder is not None and caption.occluder is None:
        return False
    return all(_event_found(e, caption) for e in claims.events)


def _objects_match(claimed: tuple[ObjectText, ...], stated: tuple[ObjectText, ...]) -> bool:
    """A one-to-one pairing of claimed objects with stated ones that agree on every claimed attribute."""

    def search(k: int, used: frozenset[int]) -> bool:
        if k == len(claimed):
            return True
        return any(
            search(k + 1, used | {j})
            for j, obj in enumerate(stated)
            if j not in used and _object_agrees(claimed[k], obj)
        )

    return search(0, frozenset())


def _object_agrees(claim: ObjectText, obj: ObjectText) -> bool:
    for field in ("color", "shape", "size", "direction", "speed", "trail", "start"):
        wanted = getattr(claim, field)
        if wanted is not None and wanted != getattr(obj, field):
            return False
    # Under gravity the world says "is thrown left ... and falls" for what a prompt calls "moves left".
    return claim.motion is None or obj.motion in _SATISFIES.get(claim.motion, (claim.motion,))


_SATISFIES = {"moves": ("moves", "thrown", "paints")}


def _event_found(event: Any, caption: SceneText) -> bool:
    def names_agree(wanted: tuple, stated: tuple) -> bool:
        if len(wanted) > len(stated):
            return False
        pool = list(stated)
        for color, shape in wanted:
            match = next((n for n in pool if color in (None, n[0]) and shape in (None, n[1])), None)
            if match is None:
                return False
            pool.remove(match)
        return True

    return any(
        e.kind == event.kind and (event.wall is None or e.wall == event.wall) and names_agree(event.objects, e.objects)
        for e in caption.events
    )
