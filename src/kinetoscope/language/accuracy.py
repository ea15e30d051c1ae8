"""How well a caption describes a clip: its objects' attributes against the ground truth's.

Predicted and true objects are paired one to one so that the most attributes agree (the
order of a caption's objects carries no meaning); a true object left without a partner is
wrong on every attribute, and predicted objects left over are counted as ``extra``.
``direction`` and ``speed`` are scored on the true objects that have one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kinetoscope.language.parse import ObjectText, SceneText

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
    pairs = pair_objects(predicted.objects, truth.objects)
    score.missing = len(truth.objects) - len(pairs)
    score.extra = len(predicted.objects) - len(pairs)
    partner = {t: p for p, t in pairs}
    for t, obj in enumerate(truth.objects):
        guess = predicted.objects[partner[t]] if t in partner else None
        for name in ALL_ATTRIBUTES:
            wanted = getattr(obj, name)
            if wanted is None and name in ("direction", "speed"):
                continue  # still objects and the player have neither
            score.total[name] += 1
            score.correct[name] += int(guess is not None and getattr(guess, name) == wanted)
    return score


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
