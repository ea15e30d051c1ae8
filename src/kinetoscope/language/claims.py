"""What a text claims that the frames alone can settle: the evaluation's reading of the caption language.

:func:`prompt_claims` reads a prompt or caption one sentence at a time with the language's own
readers (a sentence in the world's caption style with :func:`~.parse.parse_caption`, any
other with :func:`~.prompt.parse_prompt`) and keeps only what the detectors, which find
objects by colour, can check:

- objects named by colour and shape ("a red ball"), once each, and where the first sentence
  naming one object alone says it starts ("A red ball at the top left moves right ...");
- a motion from a sentence that names one object, as the captioner writes them ("A red ball
  moves right at a fast speed."), the first such sentence for each object; a heading counts
  only with its direction, being thrown without one is falling, and the player's and the
  brush's roles are no motion;
- a collision from a sentence that names exactly two objects, a bounce from one that names
  one, with the frames the sentence gives;
- how many objects there are: as many as a sentence gives without colours ("three objects
  fall"), else one per object named;
- whether the camera moves.

Sizes, speeds, scenery and objects without a colour are left out, not guessed at.
"""

from __future__ import annotations

import dataclasses

from kinetoscope.language.parse import ObjectText, SceneText, parse_caption, sentences
from kinetoscope.language.prompt import parse_prompt


@dataclasses.dataclass(frozen=True)
class ObjectClaim:
    """An object the text names, and how it says the object moves (``None``: it does not say)."""

    color: str
    shape: str
    motion: str | None = None  # "still", "moves", "thrown" or "falls"
    direction: str | None = None  # one of the eight direction words, for "moves" and "thrown"
    start: str | None = None  # one of the nine places of the view, where frame 0 shows it


@dataclasses.dataclass(frozen=True)
class EventClaim:
    """A bounce (one object, optionally a wall) or a collision (two objects) the text names."""

    kind: str  # "bounce" or "collision"
    objects: tuple[tuple[str, str], ...]  # (colour, shape) of each object taking part
    wall: str | None = None
    frames: tuple[int, ...] = ()  # when the text says "at frame(s) ..."


@dataclasses.dataclass(frozen=True)
class PromptClaims:
    objects: tuple[ObjectClaim, ...]
    count: int | None  # how many objects the text says there are
    events: tuple[EventClaim, ...]
    camera_moves: bool

    @property
    def empty(self) -> bool:
        return not (self.objects or self.count or self.events)


def prompt_claims(text: str) -> PromptClaims:
    """The checkable claims of a prompt or caption (see the module docstring for which)."""
    objects: dict[tuple[str, str], ObjectClaim] = {}
    events: list[EventClaim] = []
    count, camera_moves = None, False
    for sentence in sentences(text):
        scene = parse_caption(sentence)
        if scene.unparsed:
            scene = parse_prompt(sentence)
        named = [obj for obj in scene.objects if obj.color is not None and obj.shape is not None]
        in_events = [name for event in scene.events for name in event.objects if None not in name]
        keys = list(dict.fromkeys([(obj.color, obj.shape) for obj in named] + in_events))
        for key in keys:
            objects.setdefault(key, ObjectClaim(*key))
        if len(keys) == 1 and named and objects[keys[0]].motion is None:
            objects[keys[0]] = dataclasses.replace(objects[keys[0]], **_motion(named[0]))
        if len(keys) == 1 and named and named[0].start and objects[keys[0]].start is None:
            objects[keys[0]] = dataclasses.replace(objects[keys[0]], start=named[0].start)
        events += _events(scene, keys)
        uncoloured = sum(obj.color is None for obj in scene.objects)
        if uncoloured > 1:
            count = uncoloured
        camera_moves = camera_moves or scene.camera == "pan"
    if count is None and objects:
        count = len(objects)
    return PromptClaims(tuple(objects.values()), count, tuple(dict.fromkeys(events)), camera_moves)


def _motion(obj: ObjectText) -> dict[str, str]:
    """The motion claim of one object's words (see the module docstring)."""
    if obj.motion in ("still", "falls"):
        return {"motion": obj.motion}
    if obj.motion == "thrown":
        return {"motion": "thrown", "direction": obj.direction} if obj.direction else {"motion": "falls"}
    if obj.motion in ("moves", "paints") and obj.direction:
        return {"motion": "moves", "direction": obj.direction}
    return {}


def _events(scene: SceneText, keys: list[tuple[str, str]]) -> list[EventClaim]:
    """The collision and the bounce of one sentence, when it names as many objects as they take."""
    found = []
    collision = next((e for e in scene.events if e.kind == "collision"), None)
    if collision and len(keys) == 2:
        found.append(EventClaim("collision", tuple(sorted(keys)), frames=collision.frames))
    bounce = next((e for e in scene.events if e.kind == "bounce"), None)
    if bounce and len(keys) == 1:
        found.append(EventClaim("bounce", (keys[0],), bounce.wall, bounce.frames))
    return found
