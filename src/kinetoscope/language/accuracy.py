"""How well a caption describes a clip: its objects' attributes against the ground truth's.

Predicted and true objects are paired one to one so that the most attributes agree (the
order of a caption's objects carries no meaning); a true object left without a partner is
wrong on every attribute, and predicted objects left over are counted as ``extra``.
``direction`` and ``speed`` are scored on the true objects that have one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from kinetoscope.language.parse import ObjectText, SceneText, parse_caption

if TYPE_CHECKING:
    from kinetoscope.world.clip import Clip

#: The attributes of the captioner's bar, then the others a caption states.
ATTRIBUTES = ("color", "shape", "motion", "direction")
ALL_ATTRIBUTES = ATTRIBUTES + ("size", "speed")


@dataclasses.dataclass
class AttributeScore:
    correct: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(ALL_ATTRIBUTES, 0))
    total: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(ALL_ATTRIBUTES, 0))
    objects: int = 0
    missing: int = 0
    extra: int = 0
    captions: int = 0
    exact: int = 0

    def add(self, other: AttributeScore) -> None:
        for name in ALL_ATTRIBUTES:
            self.correct[name] += other.correct[name]
            self.total[name] += other.total[name]
        for name in ("objects", "missing", "extra", "captions", "exact"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def accuracy(self) -> dict[str, float]:
        """Share correct per attribute (nan where nothing was scored)."""
        return {n: self.correct[n] / self.total[n] if self.total[n] else float("nan") for n in ALL_ATTRIBUTES}


def score_caption(predicted: SceneText, truth: SceneText, exact: bool = False) -> AttributeScore:
    """Per-attribute agreement of one predicted caption with the true one."""
    score = AttributeScore(objects=len(truth.objects), captions=1, exact=int(exact))
    guesses = partners(predicted, truth)
    paired = sum(g is not None for g in guesses)
    score.missing = len(truth.objects) - paired
    score.extra = len(predicted.objects) - paired
    for obj, guess in zip(truth.objects, guesses):
        for name in ALL_ATTRIBUTES:
            wanted = getattr(obj, name)
            if wanted is None and name in ("direction", "speed"):
                continue  # still objects and the player have neither
            score.total[name] += 1
            score.correct[name] += int(guess is not None and getattr(guess, name) == wanted)
    return score


#: The two parts :func:`first_step` puts objects in.
HEADING_HOLDS, HEADING_TURNS = "holds through frame 1", "turns before frame 1"
#: The three parts :func:`boundary_margin` puts objects in.
MARGINS = ("under 3 degrees from an edge", "3 to 6 degrees from an edge", "6 degrees or more from an edge")


def first_step(state: dict, index: int) -> str:
    """Whether object ``index``'s heading in frame 0 still holds in frame 1.

    Where a bounce, a collision or gravity turns it before frame 1, the frames show the old
    heading only through the first step's few pixels, if at all (captions name the new one
    after a bounce or a collision: :func:`kinetoscope.world.captions.shown_velocity`).
    """
    from kinetoscope.world.vocabulary import direction_word

    velocity = state["objects"][index]["velocity"]
    return HEADING_HOLDS if direction_word(*velocity[1]) == direction_word(*velocity[0]) else HEADING_TURNS


def boundary_margin(state: dict, index: int) -> str:
    """How far (in degrees) object ``index``'s captioned heading lies from the nearest edge of its
    direction word's 45-degree sector: near an edge, a degree of error in the heading read off
    the frames changes the word."""
    from kinetoscope.world.captions import shown_velocity

    vx, vy = shown_velocity(state, index)
    off_edge = (math.degrees(math.atan2(vy, vx)) - 22.5) % 45.0
    margin = min(off_edge, 45.0 - off_edge)
    return MARGINS[0] if margin < 3 else MARGINS[1] if margin < 6 else MARGINS[2]


def direction_split(
    clips: Sequence[Clip], predicted: Sequence[SceneText], group: Callable[[dict, int], str] = first_step
) -> dict[str, list[int]]:
    """Direction ``[correct, total]`` of captions ``predicted`` for world ``clips``, per group of
    objects (in the order of the groups' names above): ``group(state, index)`` names it from the
    clip's ground-truth state (:func:`first_step`, :func:`boundary_margin`)."""
    split: dict[str, list[int]] = {}
    for clip, scene in zip(clips, predicted):
        truth = parse_caption(clip.caption)  # its objects are the state's, in order
        for index, (obj, guess) in enumerate(zip(truth.objects, partners(scene, truth))):
            if obj.direction is None:
                continue
            counts = split.setdefault(group(clip.state, index), [0, 0])
            counts[0] += guess is not None and guess.direction == obj.direction
            counts[1] += 1
    order = (HEADING_HOLDS, HEADING_TURNS, *MARGINS)
    return dict(sorted(split.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def partners(predicted: SceneText, truth: SceneText) -> list[ObjectText | None]:
    """Each true object's paired predicted object (see :func:`pair_objects`); None where it has none."""
    partner = {t: p for p, t in pair_objects(predicted.objects, truth.objects)}
    return [predicted.objects[partner[t]] if t in partner else None for t in range(len(truth.objects))]


def pair_objects(predicted: tuple[ObjectText, ...], truth: tuple[ObjectText, ...]) -> list[tuple[int, int]]:
    """``(predicted index, true index)`` pairs maximising agreeing attributes (colour counts double: it names the object)."""
    from scipy.optimize import linear_sum_assignment

    if not predicted or not truth:
        return []
    agreement = np.array([[_agreement(p, t) for t in truth] for p in predicted])
    rows, cols = linear_sum_assignment(agreement, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols)]


def _agreement(a: ObjectText, b: ObjectText) -> float:
    return 2.0 * (a.color == b.color) + sum(getattr(a, n) == getattr(b, n) for n in ALL_ATTRIBUTES[1:])
