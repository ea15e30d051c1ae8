"""Captions written from a ground-truth state, in one fixed style with the words of :mod:`.vocabulary`.

The detailed caption has sentences in this order, each always phrased the same way:

1. one per object, by id: ``"A {size} {colour} {shape} {place} {motion}."`` where place is where
   its centre is in frame 0 (``"at the top left"``, ``"in the centre"``: :func:`start_place`), left
   out when it starts outside the view, and motion is
   ``"stays still"``, ``"moves {direction} at a {speed} speed"``, ``"falls"``,
   ``"is thrown {direction} at a {speed} speed and falls"``, ``"is the player"`` or, for the
   brush, ``"moves {direction} at a {speed} speed and leaves a {colour} trail of paint"``
   (direction and speed of :func:`shown_velocity`: the velocity in the first frame, or in the
   second where a bounce or a collision turned it before then, as the frames show it);
2. the occluder, when there is one: ``"A {colour} bar stands in front of the scene."``;
3. the background: ``"The background is plain {c}."``, ``"... is a gradient from {top} at the
   top to {bottom} at the bottom."`` or ``"... is {sky} above a checkered {a} and {b} floor."``;
4. the camera: ``"The camera is static."`` or ``"The camera pans right and then back left."``;
5. the player's actions: ``"The player's actions are: right for 4 frames, stay for 1 frame."``;
6. events, grouped by kind and object(s), ordered by their first frame:
   ``"The red ball bounces off the floor at frames 3 and 9."``,
   ``"The red ball and the blue ball collide at frame 7."``, ``"The red ball leaves the frame at
   frame 20."``, ``"... enters the frame at ..."``, ``"... goes behind the bar at ..."``,
   ``"... comes out from behind the bar at ..."``. Frames count from 0, as in the state.

Objects are named ``"the {colour} {shape}"`` in events; every scenario gives each object of a
clip its own colour so these names are unambiguous.
"""

from __future__ import annotations

import math
from typing import Any

from kinetoscope.world.vocabulary import (
    WALL_WORDS,
    article,
    count_word,
    direction_word,
    place_phrase,
    place_word,
    size_word,
    speed_word,
)

#: Below this speed (world units per second) an object counts as not moving.
STILL_SPEED = 0.05

_EVENT_PHRASES = {
    "collision": "collide",
    "exit": "leaves the frame",
    "enter": "enters the frame",
    "occluded": "goes behind the bar",
    "reappear": "comes out from behind the bar",
}


def describe(state: dict[str, Any]) -> tuple[str, str]:
    """``(short, detailed)`` captions of a ground-truth state."""
    return short_caption(state), detailed_caption(state)


def detailed_caption(state: dict[str, Any]) -> str:
    sentences = []
    for index, obj in enumerate(state["objects"]):
        place = start_place(state, index)
        where = "" if place is None else f" {place_phrase(place)}"
        sentences.append(f"{_capitalise(_indefinite(obj, with_size=True))}{where} {_motion(index, state)}.")
    if state["occluder"] is not None:
        color = state["occluder"]["color"]
        sentences.append(f"{_capitalise(article(color))} {color} bar stands in front of the scene.")
    sentences.append(_background_sentence(state["background"]))
    sentences.append(
        "The camera pans right and then back left." if state["camera"]["motion"] == "pan" else "The camera is static."
    )
    if state["actions"]:
        sentences.append(f"The player's actions are: {_action_runs(state['actions'])}.")
    sentences += _event_sentences(state)
    return " ".join(sentences)


def short_caption(state: dict[str, Any]) -> str:
    """A few words: who is in the clip and the one thing that best says what happens."""
    objects = state["objects"]
    kinds = {e["type"] for e in state["events"]}
    roles = {obj["role"]: obj for obj in objects}
    if "agent" in roles:
        return f"a player moves {_indefinite(roles['agent'])}"
    if "brush" in roles:
        return f"{_indefinite(roles['brush'])} paints a trail"
    subject = _subject(objects)
    plural = len(objects) > 1
    if "collision" in kinds:
        return f"{subject} collide"
    if "occluded" in kinds:
        return f"{subject} {'pass' if plural else 'passes'} behind a bar"
    if state["camera"]["motion"] == "pan":
        return f"the camera pans across {subject}"
    if "bounce" in kinds:
        return f"{subject} {'bounce' if plural else 'bounces'}"
    if state["world"]["gravity"] > 0:
        return f"{subject} {'fall' if plural else 'falls'}"
    if all(math.hypot(*shown_velocity(state, i)) < STILL_SPEED for i in range(len(objects))):
        return f"{subject} {'stand' if plural else 'stands'} still"
    if plural:
        return f"{subject} move"
    return f"{subject} moves {direction_word(*shown_velocity(state, 0))}"


def _indefinite(obj: dict[str, Any], with_size: bool = False) -> str:
    words = f"{size_word(obj['radius'])} {obj['color']}" if with_size else obj["color"]
    return f"{article(words)} {words} {obj['shape']}"


def _definite(obj: dict[str, Any]) -> str:
    return f"the {obj['color']} {obj['shape']}"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def shown_velocity(state: dict[str, Any], index: int) -> tuple[float, float]:
    """The velocity of object ``index`` that captions name: its velocity in frame 0, unless a
    bounce or a collision turned it before frame 1; then in frame 1, the heading every frame
    after the first shows (frame 0 alone shows no motion, so the old heading is never seen)."""
    velocities = state["objects"][index]["velocity"]
    turned = any(
        event["type"] in ("bounce", "collision") and index in event["objects"] and event["frame"] <= 1
        for event in state["events"]
    )
    vx, vy = velocities[1] if turned and len(velocities) > 1 else velocities[0]
    return vx, vy


def start_place(state: dict[str, Any], index: int) -> str | None:
    """Which ninth of the view object ``index``'s centre is in at frame 0; None outside the view.

    Naming it narrows what a caption leaves open to a ninth of the view, so a model that
    conditions on it has one place to draw the object rather than anywhere."""
    world = state["world"]
    x, y = state["objects"][index]["position"][0]
    camera_x, camera_y = state["camera"]["offset"][0]
    fx, fy = (x - camera_x) / world["view_width"], (y - camera_y) / world["view_height"]
    if not (0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0):
        return None
    return place_word(fx, fy)


def _motion(index: int, state: dict[str, Any]) -> str:
    obj = state["objects"][index]
    if obj["role"] == "agent":
        return "is the player"
    vx, vy = shown_velocity(state, index)
    speed = math.hypot(vx, vy)
    heading = f"{direction_word(vx, vy)} at a {speed_word(speed)} speed"
    if obj["role"] == "brush":
        return f"moves {heading} and leaves {article(obj['color'])} {obj['color']} trail of paint"
    if state["world"]["gravity"] > 0:
        return f"is thrown {heading} and falls" if speed >= STILL_SPEED else "falls"
    return f"moves {heading}" if speed >= STILL_SPEED else "stays still"


def _background_sentence(background: dict[str, Any]) -> str:
    colors = background["colors"]
    if background["kind"] == "plain":
        return f"The background is plain {colors[0]}."
    if background["kind"] == "gradient":
        return f"The background is a gradient from {colors[0]} at the top to {colors[1]} at the bottom."
    return f"The background is {colors[0]} above a checkered {colors[1]} and {colors[2]} floor."


def _subject(objects: list[dict[str, Any]]) -> str:
    if len(objects) > 3:
        return f"{count_word(len(objects))} objects"
    return _join([_indefinite(obj) for obj in objects])


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _frames(frames: list[int]) -> str:
    return f"frame {frames[0]}" if len(frames) == 1 else f"frames {_join([str(f) for f in frames])}"


def _action_runs(actions: list[str]) -> str:
    runs: list[list[Any]] = []
    for action in actions:
        if runs and runs[-1][0] == action:
            runs[-1][1] += 1
        else:
            runs.append([action, 1])
    return ", ".join(f"{a} for {n} frame{'s' if n > 1 else ''}" for a, n in runs)


def _event_sentences(state: dict[str, Any]) -> list[str]:
    objects = state["objects"]
    groups: dict[tuple, list[int]] = {}
    for event in state["events"]:
        key = (event["type"], tuple(event["objects"]), event.get("wall"))
        groups.setdefault(key, []).append(event["frame"])
    sentences = []
    for (kind, ids, wall), frames in sorted(groups.items(), key=lambda item: (item[1][0], item[0][0], item[0][1])):
        frames = sorted(set(frames))
        names = _join([_definite(objects[i]) for i in ids])
        if kind == "bounce":
            verb = f"bounces off {WALL_WORDS[wall]}"
        else:
            verb = _EVENT_PHRASES[kind]
        sentences.append(f"{_capitalise(names)} {verb} at {_frames(frames)}.")
    return sentences
