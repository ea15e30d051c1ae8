"""The caption language: its result types and the grammar of the world's captions.

:func:`parse_caption` reads the detailed caption the world writes (see
:mod:`kinetoscope.world.captions`), sentence by sentence, recovering every attribute it
states; sentences it cannot read (a captioning model's mistakes) are kept in ``unparsed``.
The other readers of the language return the same :class:`SceneText`: the lenient prompt
reader (:mod:`.prompt`) and the evaluation's claims (:mod:`.claims`).

Motions are ``"still"``, ``"moves"``, ``"falls"``, ``"thrown"`` (thrown and falling),
``"player"`` and ``"paints"`` (the brush); directions, sizes and speeds are the words of
:mod:`kinetoscope.world.vocabulary`.
"""

from __future__ import annotations

import dataclasses
import re

from kinetoscope.world.vocabulary import (
    ACTIONS,
    COLORS,
    DIRECTIONS,
    PLACES,
    SHAPES,
    SIZE_WORDS,
    SPEED_WORDS,
    WALL_WORDS,
)

MOTIONS = ("still", "moves", "falls", "thrown", "player", "paints")
EVENT_KINDS = ("bounce", "collision", "exit", "enter", "occluded", "reappear")


@dataclasses.dataclass(frozen=True)
class ObjectText:
    """One object as words; ``None`` where the text does not say."""

    color: str | None = None
    shape: str | None = None
    size: str | None = None
    motion: str | None = None
    direction: str | None = None
    speed: str | None = None
    #: The brush's paint colour ("leaves a red trail of paint").
    trail: str | None = None
    #: Where it starts: one of the ninths of the view (``"top left"``, ``"centre"``).
    start: str | None = None


@dataclasses.dataclass(frozen=True)
class EventText:
    """An event: ``objects`` are ``(colour, shape)`` names (``None`` parts when a prompt leaves them open)."""

    kind: str
    objects: tuple[tuple[str | None, str | None], ...] = ()
    wall: str | None = None
    frames: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class SceneText:
    objects: tuple[ObjectText, ...] = ()
    #: ``"plain"``, ``"gradient"`` or ``"floor"``, and its colours in caption order (a prompt may give colours only).
    background: str | None = None
    background_colors: tuple[str, ...] = ()
    camera: str | None = None  # "static" or "pan"
    #: The bar's colour when there is one; ``""`` when a prompt mentions a bar without a colour.
    occluder: str | None = None
    actions: tuple[str, ...] | None = None
    events: tuple[EventText, ...] = ()
    #: Caption sentences that do not follow the world's style.
    unparsed: tuple[str, ...] = ()
    #: Prompt words outside the world's vocabulary, in order of first use.
    unknown_words: tuple[str, ...] = ()


# ---------------------------------------------------------------- the caption's grammar
def _alternatives(words: tuple[str, ...] | list[str]) -> str:
    """A regex alternation, longest first so "very slow" wins over "slow"."""
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_COLOR = _alternatives(list(COLORS))
_SHAPE = _alternatives(SHAPES)
_SIZE = _alternatives([w for w, _, _ in SIZE_WORDS])
_SPEED = _alternatives([w for w, _, _ in SPEED_WORDS])
_DIRECTION = _alternatives(DIRECTIONS)
_NAME = rf"the (?:{_COLOR}) (?:{_SHAPE})"
_HEADING = rf"(?P<direction>{_DIRECTION}) at an? (?P<speed>{_SPEED}) speed"

_OBJECT = re.compile(
    rf"an? (?P<size>{_SIZE}) (?P<color>{_COLOR}) (?P<shape>{_SHAPE})"
    rf"(?: (?:at|in) the (?P<start>{_alternatives(PLACES)}))? (?P<motion>.+)"
)
#: How each motion is phrased after the object's name.
_MOTION_PHRASES = {
    "still": re.compile("stays still"),
    "player": re.compile("is the player"),
    "falls": re.compile("falls"),
    "thrown": re.compile(rf"is thrown {_HEADING} and falls"),
    "moves": re.compile(rf"moves {_HEADING}"),
    "paints": re.compile(rf"moves {_HEADING} and leaves an? (?P<trail>{_COLOR}) trail of paint"),
}
_OCCLUDER = re.compile(rf"an? (?P<color>{_COLOR}) bar stands in front of the scene")
_PLAIN = re.compile(rf"the background is plain (?P<c0>{_COLOR})")
_GRADIENT = re.compile(
    rf"the background is a gradient from (?P<c0>{_COLOR}) at the top to (?P<c1>{_COLOR}) at the bottom"
)
_FLOOR = re.compile(
    rf"the background is (?P<c0>{_COLOR}) above a checkered (?P<c1>{_COLOR}) and (?P<c2>{_COLOR}) floor"
)
_CAMERA = re.compile(r"the camera (?:(?P<static>is static)|(?P<pan>pans right and then back left))")
_ACTIONS = re.compile(
    rf"the player's actions are: (?P<runs>(?:(?:{_alternatives(list(ACTIONS))}) for \d+ frames?(?:, )?)+)"
)
_FRAMES = r"frames? (?P<frames>\d+(?:(?:, | and )\d+)*)"
_EVENT_VERBS = {
    "collision": "collide",
    "exit": "leaves the frame",
    "enter": "enters the frame",
    "occluded": "goes behind the bar",
    "reappear": "comes out from behind the bar",
}
_WALL_NAMES = {phrase: wall for wall, phrase in WALL_WORDS.items()}
_EVENT = re.compile(
    rf"(?P<names>{_NAME}(?: and {_NAME})*) "
    rf"(?:bounces off (?P<wall>{_alternatives(list(_WALL_NAMES))})|(?P<verb>{_alternatives(list(_EVENT_VERBS.values()))})) "
    rf"at {_FRAMES}"
)
_NAMED = re.compile(rf"the (?P<color>{_COLOR}) (?P<shape>{_SHAPE})")


def parse_caption(text: str) -> SceneText:
    """Every attribute a caption in the world's style states; other sentences go to ``unparsed``."""
    fields: dict = {"objects": [], "events": [], "unparsed": []}
    for sentence in sentences(text):
        if not _read_sentence(sentence.lower(), fields):
            fields["unparsed"].append(sentence)
    return SceneText(
        objects=tuple(fields["objects"]),
        background=fields.get("background"),
        background_colors=fields.get("background_colors", ()),
        camera=fields.get("camera"),
        occluder=fields.get("occluder"),
        actions=fields.get("actions"),
        events=tuple(fields["events"]),
        unparsed=tuple(fields["unparsed"]),
    )


def sentences(text: str) -> list[str]:
    """Sentences without their closing marks ("frames 3 and 9." ends one; no number has a dot)."""
    return [s.strip() for s in re.split(r"[.!?;](?:\s+|$)", text.strip()) if s.strip()]


def _read_sentence(sentence: str, fields: dict) -> bool:
    """Record what one lower-case sentence says in ``fields``; False when it is not in the style."""
    if (m := _OBJECT.fullmatch(sentence)) and (obj := _object_from_match(m)):
        fields["objects"].append(obj)
    elif m := _OCCLUDER.fullmatch(sentence):
        fields["occluder"] = m["color"]
    elif m := (_PLAIN.fullmatch(sentence) or _GRADIENT.fullmatch(sentence) or _FLOOR.fullmatch(sentence)):
        kind = {_PLAIN: "plain", _GRADIENT: "gradient", _FLOOR: "floor"}[m.re]
        fields["background"] = kind
        fields["background_colors"] = tuple(c for c in m.groups() if c is not None)
    elif m := _CAMERA.fullmatch(sentence):
        fields["camera"] = "static" if m["static"] else "pan"
    elif m := _ACTIONS.fullmatch(sentence):
        fields["actions"] = _action_list(m["runs"])
    elif m := _EVENT.fullmatch(sentence):
        fields["events"].append(_event_from_match(m))
    else:
        return False
    return True


def _object_from_match(m: re.Match[str]) -> ObjectText | None:
    for motion, phrase in _MOTION_PHRASES.items():
        if h := phrase.fullmatch(m["motion"]):
            heading = h.groupdict()
            return ObjectText(
                color=m["color"],
                shape=m["shape"],
                size=m["size"],
                motion=motion,
                direction=heading.get("direction"),
                speed=heading.get("speed"),
                trail=heading.get("trail"),
                start=m["start"],
            )
    return None


def _action_list(runs: str) -> tuple[str, ...]:
    actions: list[str] = []
    for action, count in re.findall(r"(\w+) for (\d+) frames?", runs):
        actions += [action] * int(count)
    return tuple(actions)


def _event_from_match(m: re.Match[str]) -> EventText:
    names = tuple((n["color"], n["shape"]) for n in _NAMED.finditer(m["names"]))
    frames = tuple(int(f) for f in re.findall(r"\d+", m["frames"]))
    if m["wall"]:
        return EventText("bounce", names, _WALL_NAMES[m["wall"]], frames)
    kind = next(k for k, verb in _EVENT_VERBS.items() if verb == m["verb"])
    return EventText(kind, names, None, frames)
