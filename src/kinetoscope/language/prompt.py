"""Read a user's short prompt into the world's vocabulary, leniently: :func:`parse_prompt`.

"a fast red ball bounces off the floor" fills the fields of :class:`~kinetoscope.language.parse.SceneText`
that the prompt speaks of and leaves the others ``None``; words outside the world's
vocabulary are listed in ``unknown_words``. A caption in the world's own style is read by the
caption grammar (:func:`~kinetoscope.language.parse.parse_caption`) instead.
"""

from __future__ import annotations

import re

from kinetoscope.language.parse import EventText, ObjectText, SceneText, parse_caption
from kinetoscope.world.vocabulary import (
    BACKGROUND_COLORS,
    DIRECTIONS,
    FLOOR_COLORS,
    NUMBER_WORDS,
    OBJECT_COLORS,
    SHAPES,
    SIZE_WORDS,
    SPEED_WORDS,
)


def _each(words: str, value: str) -> dict[str, str]:
    """``_each("falls fall", "falls")`` -> ``{"falls": "falls", "fall": "falls"}``."""
    return dict.fromkeys(words.split(), value)


#: Nouns for objects: the shapes, their plurals and a few synonyms.
_NOUNS = {
    **{s: s for s in SHAPES},
    **{f"{s}s": s for s in SHAPES},
    **_each("circle circles sphere spheres", "ball"),
    **_each("box boxes cube cubes", "square"),
}
_GENERIC_NOUNS = frozenset({"object", "objects", "shape", "shapes", "thing", "things"})
_NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS) if i >= 1} | {str(i): i for i in range(1, 11)}
_SIZES = {w: w for w, _, _ in SIZE_WORDS} | {"big": "large", "little": "small", "giant": "huge"}
_MOTION_VERBS = {
    **_each(
        "moves move moving goes go going rolls roll rolling travels travel travelling traveling slides slide", "moves"
    ),
    **_each("sliding flies fly flying heads heading passes pass passing crosses cross crossing", "moves"),
    **_each("falls fall falling drops drop dropping", "falls"),
    **_each("thrown throw throws tossed toss tosses launched", "thrown"),
    **_each("still stationary resting rests motionless", "still"),
}
_EVENT_VERBS = {
    **_each("bounces bounce bouncing", "bounce"),
    **_each("collide collides colliding collision hits hit crash crashes", "collision"),
    **_each("leaves leave leaving exits exit", "exit"),
    **_each("enters enter entering", "enter"),
    "behind": "occluded",
}
_ROLE_WORDS = {**_each("player player's", "player"), **_each("paints paint painting brush trail", "paints")}
_DIRECTION_WORDS = {
    **{d: d for d in DIRECTIONS},
    **_each("upward upwards", "up"),
    **_each("downward downwards", "down"),
    **_each("rightward rightwards", "right"),
    **_each("leftward leftwards", "left"),
}
_PLACE_ROWS = {**_each("top upper", "top"), **_each("bottom lower", "bottom")}
_PLACE_CENTRES = frozenset({"centre", "center", "middle"})
_SPEED_ADVERBS = {**_each("slowly slow", "slow"), **_each("quickly rapidly fast", "fast")}
_CAMERA_MOVES = frozenset({"pans", "pan", "panning", "moves", "moving"})
#: Words with no claim of their own that belong to the way the world speaks.
_FUNCTION_WORDS = frozenset(
    _each(
        "a an the and then of at to in on off over with from its it is are be by for into onto across around "
        "through while as other another each both frame frames speed background backdrop camera scene view wall "
        "walls top bottom side ceiling floor above below front out comes come back stands stand stays stay "
        "static pans pan panning together against past along very there some starts start starting begins "
        "begin corner side edge",
        "",
    )
)
_WORD = re.compile(r"[a-z0-9']+(?:-[a-z]+)?")


def parse_prompt(text: str) -> SceneText:
    """What a short prompt says in the world's vocabulary; ``None`` wherever it leaves a choice open.

    A caption in the world's own style is read exactly as :func:`parse_caption` reads it.
    """
    caption = parse_caption(text)
    if caption.objects and not caption.unparsed:
        return caption
    return _PromptReader(text).read()


class _PromptReader:
    """Left to right: noun phrases make objects; the words after them say what those objects do.

    Objects joined by "and" before any verb form one group ("a red ball and a blue ball
    collide"); a verb, direction or speed applies to the whole group.
    """

    def __init__(self, text: str):
        spaced = re.sub(r"\b(up|down) (right|left)\b", r"\1-\2", text.lower())
        self.words: list[str] = _WORD.findall(spaced)
        self.objects: list[dict] = []
        self.group: list[int] = []
        self.group_acted = False  # a verb has been read since the group began
        self.phrase: list[int] = []  # the objects of the last noun phrase, which a place right after it qualifies
        self.events: list[EventText] = []
        self.unknown: list[str] = []
        self.scene: dict = {}
        self.pending_role: str | None = None

    def read(self) -> SceneText:
        i = 0
        while i < len(self.words):
            i = self._phrase(i)
        return SceneText(
            objects=tuple(ObjectText(**o) for o in self.objects),
            background=self.scene.get("background"),
            background_colors=tuple(self.scene.get("background_colors", ())),
            camera=self.scene.get("camera"),
            occluder=self.scene.get("occluder"),
            events=tuple(dict.fromkeys(self.events)),
            unknown_words=tuple(dict.fromkeys(self.unknown)),
        )

    def _phrase(self, i: int) -> int:
        """Read the phrase that starts at word ``i``; return the index after it."""
        for reader in (self._camera, self._background, self._noun_phrase, self._speed, self._place, self._verb):
            end = reader(i)
            if end is not None:
                return end
        word = self.words[i]
        if word not in _FUNCTION_WORDS and word not in _NUMBERS:
            self.unknown.append(word)
        return i + 1

    # --- scenery
    def _camera(self, i: int) -> int | None:
        w = self.words
        if w[i] != "camera":
            return None
        after = w[i + 1 : i + 3]
        if any(v in _CAMERA_MOVES for v in after):
            self.scene["camera"] = "pan"
            j = i + 1 + next(k for k, v in enumerate(after) if v in _CAMERA_MOVES) + 1
            while j < len(w) and w[j] in ("right", "left", "and", "then", "back", "across"):
                j += 1
            return j
        if i > 0 and w[i - 1] in ("static", "still", "fixed") or any(v in ("static", "still", "fixed") for v in after):
            self.scene["camera"] = "static"
            return i + 1 + len([v for v in after if v in ("is", "static", "still", "fixed")])
        return i + 1

    def _background(self, i: int) -> int | None:
        """``plain white background``, ``gradient from cream to sky blue``, ``checkered sand and tan floor``."""
        w = self.words
        kind, colors, j = None, [], i
        while j < len(w):
            if w[j] in ("plain", "gradient", "checkered"):
                kind = kind or {"checkered": "floor"}.get(w[j], w[j])
                j += 1
            elif (found := _color_at(w, j, BACKGROUND_COLORS + FLOOR_COLORS)) is not None:
                colors.append(found[0])
                j = found[1]
            elif w[j] in ("from", "to", "and", "at", "the", "top", "bottom", "above", "a") and (kind or colors):
                j += 1
            else:
                break
        ends_in_background = j < len(w) and w[j] in ("background", "backdrop", "floor")
        if not colors and kind is None:
            # An object colour names the background only right before the word "background".
            found = _color_at(w, i, OBJECT_COLORS)
            if found is None or found[1] >= len(w) or w[found[1]] not in ("background", "backdrop"):
                return None
            colors, j, ends_in_background = [found[0]], found[1], True
        # Give back trailing joiners ("... white and a red ball"), but not a gradient's "at the bottom".
        gradient_end = colors and w[j - 3 : j] in (["at", "the", "top"], ["at", "the", "bottom"])
        while not gradient_end and j > i and w[j - 1] in ("and", "at", "the", "top", "bottom", "a", "to", "from", "above"):
            j -= 1
        if w[j : j + 1] and w[j] == "floor":
            kind = "floor"
        if ends_in_background:
            j += 1
        if kind is not None:
            self.scene["background"] = kind
        self.scene["background_colors"] = tuple(colors)
        return j

    # --- objects
    def _noun_phrase(self, i: int) -> int | None:
        """``[number] [size] [speed] [colour] noun``: new objects, or "the ..." naming one met before."""
        w, j = self.words, i
        number = _NUMBERS.get(w[j])
        if number is not None:
            j += 1
        attrs: dict = {}
        while j < len(w):
            if w[j] in _SIZES:
                attrs["size"], j = _SIZES[w[j]], j + 1
            elif (found := _color_at(w, j, OBJECT_COLORS)) is not None:
                attrs["color"], j = found
            elif (speed := _speed_at(w, j, adverbs=False)) is not None:
                attrs["speed"], j = speed
            else:
                break
        if j >= len(w) or not (w[j] in _NOUNS or (w[j] in _GENERIC_NOUNS and (attrs or number))):
            return None
        if w[j] in _NOUNS:
            attrs["shape"] = _NOUNS[w[j]]
        plural = w[j].endswith("s") and w[j] not in SHAPES and w[j] not in ("glass",)
        how_many = number if number is not None else (2 if plural else 1)
        start = i - 1 if i > 0 and w[i - 1] in ("a", "an", "the") else i
        definite = start < i and w[start] == "the" and number is None
        joined = start > 0 and w[start - 1] == "and" and self.group and not self.group_acted
        indices = self._named(attrs) if definite else []
        if not indices:
            for _ in range(how_many):
                self.objects.append(
                    {
                        "color": attrs.get("color"),
                        "shape": attrs.get("shape"),
                        "size": attrs.get("size"),
                        "speed": attrs.get("speed"),
                    }
                )
                indices.append(len(self.objects) - 1)
        self.group = self.group + indices if joined else indices
        self.phrase = indices
        self.group_acted = False
        if self.pending_role is not None:
            self._set_motion(self.pending_role)
            self.pending_role = None
        return j + 1

    def _named(self, attrs: dict) -> list[int]:
        """The first object met before that agrees with every attribute given."""
        for k, obj in enumerate(self.objects):
            if all(obj.get(key) in (None, value) for key, value in attrs.items()):
                return [k]
        return []

    # --- what they do
    def _speed(self, i: int) -> int | None:
        found = _speed_at(self.words, i, adverbs=True)
        if found is None:
            return None
        for k in self._subjects():
            self.objects[k]["speed"] = found[0]
        return found[1]

    def _place(self, i: int) -> int | None:
        """``at the top left``, ``in the top left corner``, ``in the centre of the frame``: where the objects of
        the last noun phrase start ("a red ball on the left and a blue ball on the right")."""
        w = self.words
        if w[i] not in ("at", "in", "on"):
            return None
        j = i + 1 + (w[i + 1 : i + 2] == ["the"])
        rows, columns, centre = [], [], False
        while j < len(w) and (w[j] in _PLACE_ROWS or w[j] in ("left", "right") or w[j] in _PLACE_CENTRES):
            if w[j] in _PLACE_ROWS:
                rows.append(_PLACE_ROWS[w[j]])
            elif w[j] in _PLACE_CENTRES:
                centre = True
            else:
                columns.append(w[j])
            j += 1
        if not (rows or columns or centre) or len(rows) > 1 or len(columns) > 1:
            return None
        j += w[j : j + 1] in (["corner"], ["side"], ["edge"])
        if w[j : j + 3] in (["of", "the", v] for v in ("view", "frame", "picture", "screen", "scene", "video")):
            j += 3
        place = " ".join(rows + columns) or "centre"
        for k in self.phrase or self._subjects():
            self.objects[k]["start"] = place
        return j

    def _verb(self, i: int) -> int | None:
        w = self.words
        word = w[i]
        if word in _EVENT_VERBS:
            return self._event(i, _EVENT_VERBS[word])
        if word in _MOTION_VERBS:
            self._set_motion(_MOTION_VERBS[word])
            return i + 1
        if word == "down" and i > 0 and _MOTION_VERBS.get(w[i - 1]) == "falls":
            return i + 1  # "falls down" is falling, not a heading
        if word in _DIRECTION_WORDS:
            for k in self._subjects():
                obj = self.objects[k]
                obj["direction"] = _DIRECTION_WORDS[word]
                obj["motion"] = "thrown" if obj.get("motion") in ("falls", "thrown") else obj.get("motion") or "moves"
                if obj["motion"] == "still":
                    obj["motion"] = "moves"
            self.group_acted = True
            return i + 1
        if word in _ROLE_WORDS:
            if word == "player" and w[i + 1 : i + 2] in (["moves"], ["controls"], ["drives"], ["steers"]):
                self.pending_role = "player"  # "a player moves a blue star": the next object is the player
                return i + 2
            self._set_motion(_ROLE_WORDS[word])
            return i + 1
        if word in ("bar", "occluder"):
            self.scene.setdefault("occluder", "")
            return i + 1
        return None

    def _set_motion(self, motion: str) -> None:
        for k in self._subjects():
            obj = self.objects[k]
            current = obj.get("motion")
            if current == "moves" and motion == "falls" and obj.get("direction"):
                obj["motion"] = "thrown"  # "moves up and then falls": the world's "is thrown up ... and falls"
            elif current in (None, "moves", "still") or (current == "falls" and motion == "thrown"):
                obj["motion"] = motion
            # "is thrown left and falls" stays one motion, thrown
        self.group_acted = True

    def _event(self, i: int, kind: str) -> int:
        w = self.words
        names = tuple((self.objects[k]["color"], self.objects[k]["shape"]) for k in self.group)
        wall, end = None, i + 1
        if kind == "bounce":
            wall, end = _wall_after(w, i + 1)
        elif not (kind == "collision" and names):
            if kind == "occluded":
                self.scene.setdefault("occluder", "")
            while end < len(w) and w[end] in ("the", "frame", "view", "scene", "a", "bar"):
                if w[end] == "bar":
                    self.scene.setdefault("occluder", "")
                end += 1
        frames, end = _frames_after(w, end)
        if kind == "bounce":
            self.events += [EventText("bounce", (name,), wall, frames) for name in names or ((None, None),)]
        elif kind != "collision":
            self.events.append(EventText(kind, names, frames=frames))
        elif names:
            self.events.append(EventText("collision", names, frames=frames))
        self.group_acted = True
        return end

    def _subjects(self) -> list[int]:
        """The objects a verb applies to: the current group, or a new unnamed object when there is none."""
        if not self.group:
            self.objects.append({"color": None, "shape": None, "size": None, "speed": None})
            self.group = [len(self.objects) - 1]
        return self.group


def _color_at(words: list[str], i: int, palette: tuple[str, ...]) -> tuple[str, int] | None:
    """The palette colour that starts at word ``i`` (two-word names first) and the index after it."""
    for name in sorted(palette, key=lambda c: -len(c.split())):
        parts = name.split()
        if words[i : i + len(parts)] == parts:
            return name, i + len(parts)
    return None


def _speed_at(words: list[str], i: int, adverbs: bool) -> tuple[str, int] | None:
    """``fast``, ``very slow``, ``at a moderate speed`` (and ``slowly`` when ``adverbs``) -> (speed word, next index)."""
    j = i + 2 if words[i : i + 2] in (["at", "a"], ["at", "an"]) else i
    for word in sorted((w for w, _, _ in SPEED_WORDS if w != "still"), key=lambda s: -len(s)):
        parts = word.split()
        if words[j : j + len(parts)] == parts:
            end = j + len(parts)
            if j > i:  # "at a fast speed"
                if words[end : end + 1] != ["speed"]:
                    return None
                end += 1
            return word, end
    if adverbs and words[i] == "very" and words[i + 1 : i + 2] in (["slowly"], ["quickly"], ["rapidly"]):
        return f"very {_SPEED_ADVERBS[words[i + 1]]}", i + 2
    if adverbs and words[i] in _SPEED_ADVERBS:
        return _SPEED_ADVERBS[words[i]], i + 1
    return None


def _wall_after(words: list[str], i: int) -> tuple[str | None, int]:
    """``off the left wall`` / ``off the floor`` after a bounce verb -> (wall, index after it)."""
    j = i + (words[i : i + 1] == ["off"])
    j += words[j : j + 1] == ["the"]
    if words[j : j + 1] in (["floor"], ["ground"], ["ceiling"]):
        return ("floor" if words[j] == "ground" else words[j]), j + 1
    if words[j : j + 2] in (["left", "wall"], ["right", "wall"]):
        return words[j], j + 2
    if words[j : j + 1] in (["wall"], ["walls"]):
        return None, j + 1
    return None, i


def _frames_after(words: list[str], i: int) -> tuple[tuple[int, ...], int]:
    """``at frame 7`` / ``at frames 3, 9 and 12`` after an event -> (frames, index after them)."""
    j = i + (words[i : i + 1] == ["at"])
    if words[j : j + 1] not in (["frame"], ["frames"]):
        return (), i
    frames, j = [], j + 1
    while j < len(words) and words[j].isdigit():
        frames.append(int(words[j]))
        j += 1
        if words[j : j + 1] == ["and"] and words[j + 1 : j + 2] and words[j + 1].isdigit():
            j += 1  # "3, 9 and 12" (the commas are not words)
    return (tuple(frames), j) if frames else ((), i)
