"""Read back what a prompt asks for, with the world's vocabulary: objects, count, motion and events.

The parser understands the captioner's phrasing (see :mod:`kinetoscope.world.captions`) and
short prompts written the same way, for example ``"a red ball and a blue ball collide"`` or
``"three objects fall"``. Objects are ``{colour} {shape}`` pairs (a size word may sit
between the article and the colour); motions are ``stays still``, ``moves {direction}``,
``is thrown {direction} ... and falls`` and ``falls``; events are bounces (``bounces off the
floor``) and collisions (``... and ... collide``). Anything else is ignored, not guessed at.
"""

from __future__ import annotations

import dataclasses
import re

from kinetoscope.world.vocabulary import DIRECTIONS, NUMBER_WORDS, OBJECT_COLORS, SHAPES, SIZE_WORDS, WALL_WORDS

_COLOR = "|".join(sorted(OBJECT_COLORS, key=len, reverse=True))
_SHAPE = "|".join(SHAPES)
_SIZE = "|".join(word for word, _, _ in SIZE_WORDS)
_DIRECTION = "|".join(sorted(DIRECTIONS, key=len, reverse=True))
_MENTION = re.compile(rf"\b(?P<article>an?|the|one)\s+(?:(?:{_SIZE})\s+)?(?P<color>{_COLOR})\s+(?P<shape>{_SHAPE})\b")
_MOTION = re.compile(
    rf"\b(?:(?P<still>stays still|stands still|stand still)|(?:moves|move|is thrown|are thrown)\s+(?P<direction>{_DIRECTION})\b|(?P<falls>falls|fall)\b)"
)
_COUNT = re.compile(rf"\b(?P<number>{'|'.join(NUMBER_WORDS[2:])})\s+(?:objects|shapes|balls|squares|triangles|stars)\b")
_WALL = {phrase.removeprefix("the "): wall for wall, phrase in WALL_WORDS.items()}
_BOUNCE = re.compile(rf"\bbounces?(?:\s+off\s+the\s+(?P<wall>{'|'.join(_WALL)}))?")
_COLLIDE = re.compile(r"\bcollides?\b")
_AT_FRAMES = re.compile(r"\bat frames? ((?:\d+(?:, | and )?)+)")


@dataclasses.dataclass(frozen=True)
class ObjectClaim:
    """An object the prompt names, and how it says the object moves (``None``: it does not say)."""

    color: str
    shape: str
    motion: str | None = None  # "still", "moves", "thrown" or "falls"
    direction: str | None = None  # one of the eight direction words, for "moves" and "thrown"


@dataclasses.dataclass(frozen=True)
class EventClaim:
    """A bounce (one object, optionally a wall) or a collision (two objects) the prompt names."""

    kind: str  # "bounce" or "collision"
    objects: tuple[tuple[str, str], ...]  # (colour, shape) of each object taking part
    wall: str | None = None
    frames: tuple[int, ...] = ()  # when the prompt says "at frame(s) ..."


@dataclasses.dataclass(frozen=True)
class PromptClaims:
    objects: tuple[ObjectClaim, ...]
    count: int | None  # how many objects the prompt says there are
    events: tuple[EventClaim, ...]
    camera_moves: bool

    @property
    def empty(self) -> bool:
        return not (self.objects or self.count or self.events)


def parse_prompt(text: str) -> PromptClaims:
    """The checkable claims of a prompt or caption (see the module docstring for the phrasing)."""
    objects: dict[tuple[str, str], ObjectClaim] = {}
    events: list[EventClaim] = []
    count = None
    for sentence in re.split(r"(?<=[.!?;])\s+", text.strip().lower()):
        mentions = list(_MENTION.finditer(sentence))
        keys = list(dict.fromkeys((m["color"], m["shape"]) for m in mentions))
        for key in keys:
            objects.setdefault(key, ObjectClaim(*key))
        motion = _MOTION.search(sentence, mentions[-1].end()) if mentions else None
        # A motion belongs to the object when the sentence names exactly one (the captioner's style).
        if motion and len(keys) == 1 and objects[keys[0]].motion is None:
            objects[keys[0]] = _with_motion(objects[keys[0]], motion)
        frames = _frames(sentence)
        if _COLLIDE.search(sentence) and len(keys) == 2:
            events.append(EventClaim("collision", tuple(sorted(keys)), frames=frames))
        bounce = _BOUNCE.search(sentence)
        if bounce and len(keys) == 1:
            events.append(EventClaim("bounce", (keys[0],), _WALL.get(bounce["wall"] or ""), frames))
        number = _COUNT.search(sentence)
        if number:
            count = NUMBER_WORDS.index(number["number"])
    if count is None and objects:
        count = len(objects)
    camera_moves = bool(re.search(r"\bcamera (?:pans|moves)\b", text.lower()))
    return PromptClaims(tuple(objects.values()), count, tuple(dict.fromkeys(events)), camera_moves)


def _with_motion(claim: ObjectClaim, match: re.Match[str]) -> ObjectClaim:
    if match["still"]:
        return dataclasses.replace(claim, motion="still")
    if match["falls"]:
        return dataclasses.replace(claim, motion="falls")
    kind = "thrown" if "thrown" in match[0] else "moves"
    return dataclasses.replace(claim, motion=kind, direction=match["direction"])


def _frames(sentence: str) -> tuple[int, ...]:
    """``"... at frames 3, 9 and 12."`` -> ``(3, 9, 12)``."""
    match = _AT_FRAMES.search(sentence)
    return tuple(int(n) for n in re.findall(r"\d+", match[1])) if match else ()
