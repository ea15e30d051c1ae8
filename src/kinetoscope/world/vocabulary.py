"""The world's words: one vocabulary for the captioner and for everything that reads captions back.

Colour names map to sRGB; size, speed and direction words map to ranges of world units, so
a caption word can be turned back into the interval of values it stands for
(:func:`word_range`). The captioner (``captions.py``) writes only words from this module,
and the evaluation work parses prompts and captions with the same tables.
"""

from __future__ import annotations

import math

from kinetoscope.errors import InvalidInputError

#: Height of the view in world units: a frame of height H shows ``VIEW_HEIGHT`` units, so
#: the scale is ``H / VIEW_HEIGHT`` pixels per unit and wider frames see more world.
VIEW_HEIGHT = 10.0

#: Standard gravity of the physical-law presets, world units per second squared.
GRAVITY = 9.8

#: Every named colour, sRGB 0-255.
COLORS: dict[str, tuple[int, int, int]] = {
    # object colours: saturated, unlike any background or scenery colour
    "red": (220, 38, 38),
    "orange": (245, 130, 20),
    "yellow": (230, 190, 20),
    "green": (34, 160, 70),
    "teal": (20, 150, 150),
    "blue": (37, 90, 220),
    "purple": (130, 60, 190),
    "pink": (235, 90, 160),
    "brown": (130, 80, 40),
    # backgrounds
    "white": (255, 255, 255),
    "light gray": (215, 215, 215),
    "cream": (245, 235, 210),
    "sky blue": (190, 220, 245),
    "pale green": (215, 240, 210),
    # scenery: floor tiles and the occluder
    "sand": (225, 200, 150),
    "tan": (190, 160, 110),
    "dark gray": (70, 70, 70),
}

OBJECT_COLORS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown")
#: The physical-law presets draw balls in strong colours on white, as the paper does.
PRESET_COLORS = ("red", "blue", "green", "orange", "purple", "brown")
BACKGROUND_COLORS = ("white", "light gray", "cream", "sky blue", "pale green")
FLOOR_COLORS = ("sand", "tan")
OCCLUDER_COLOR = "dark gray"

SHAPES = ("ball", "square", "triangle", "star")
BACKGROUNDS = ("plain", "gradient", "floor")
WALLS = ("floor", "ceiling", "left", "right")
#: How a wall is named in captions.
WALL_WORDS = {"floor": "the floor", "ceiling": "the ceiling", "left": "the left wall", "right": "the right wall"}

#: Size words by radius in world units: ``(word, low, high)``, low inclusive, high exclusive.
SIZE_WORDS: tuple[tuple[str, float, float], ...] = (
    ("tiny", 0.0, 0.45),
    ("small", 0.45, 0.8),
    ("medium", 0.8, 1.2),
    ("large", 1.2, 1.6),
    ("huge", 1.6, math.inf),
)

#: Speed words by speed in world units per second; captions say "at a {word} speed".
SPEED_WORDS: tuple[tuple[str, float, float], ...] = (
    ("still", 0.0, 0.05),
    ("very slow", 0.05, 1.0),
    ("slow", 1.0, 2.0),
    ("moderate", 2.0, 3.0),
    ("fast", 3.0, 4.5),
    ("very fast", 4.5, math.inf),
)

#: Eight direction words, counter-clockwise from +x, each covering 45 degrees (y is up).
DIRECTIONS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")

#: The agent's actions and the unit step each one makes (y up).
ACTIONS: dict[str, tuple[int, int]] = {
    "up": (0, 1),
    "down": (0, -1),
    "left": (-1, 0),
    "right": (1, 0),
    "stay": (0, 0),
}

#: Where in the view an object starts: the view cut in thirds each way, rows top to bottom.
PLACES = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _word_for(value: float, table: tuple[tuple[str, float, float], ...]) -> str:
    for word, low, high in table:
        if low <= value < high:
            return word
    return table[0][0] if value < table[0][1] else table[-1][0]


def size_word(radius: float) -> str:
    """``1.3`` -> ``"large"``."""
    return _word_for(radius, SIZE_WORDS)


def speed_word(speed: float) -> str:
    """``3.2`` -> ``"fast"``."""
    return _word_for(speed, SPEED_WORDS)


def direction_word(vx: float, vy: float) -> str:
    """The nearest of the eight directions to the vector ``(vx, vy)`` (y up)."""
    sector = round(math.degrees(math.atan2(vy, vx)) / 45.0) % 8
    return DIRECTIONS[sector]


def place_word(x: float, y: float) -> str:
    """The third of the view each way that the point ``(x, y)`` lies in, as fractions of the view's
    width and height from its bottom-left corner (y up): ``(0.1, 0.9)`` -> ``"top left"``."""
    column = min(max(int(x * 3), 0), 2)
    row = 2 - min(max(int(y * 3), 0), 2)
    return PLACES[3 * row + column]


def place_span(place: str, view_width: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The x and y intervals (world units, y up) of ``place`` in a view ``view_width`` wide:
    ``"top left"`` -> ``((0, w/3), (2H/3, H))``; the inverse of :func:`place_word`."""
    if place not in PLACES:
        raise InvalidInputError(f"{place!r} is not a place in the view; the places are {', '.join(PLACES)}.")
    row, column = divmod(PLACES.index(place), 3)
    return (
        (column * view_width / 3, (column + 1) * view_width / 3),
        ((2 - row) * VIEW_HEIGHT / 3, (3 - row) * VIEW_HEIGHT / 3),
    )


def place_phrase(place: str) -> str:
    """``"top left"`` -> ``"at the top left"``; ``"centre"`` -> ``"in the centre"``."""
    return f"{'in' if place == 'centre' else 'at'} the {place}"


def word_range(word: str) -> tuple[float, float]:
    """The interval a size or speed word stands for: ``"fast"`` -> ``(3.0, 4.5)``."""
    for table in (SIZE_WORDS, SPEED_WORDS):
        for name, low, high in table:
            if name == word:
                return low, high
    known = [w for table in (SIZE_WORDS, SPEED_WORDS) for w, _, _ in table]
    raise InvalidInputError(f"{word!r} is not a size or speed word; the words are {', '.join(known)}.")


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def count_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def rgb(name: str) -> tuple[int, int, int]:
    """The sRGB of a named colour."""
    if name not in COLORS:
        raise InvalidInputError(f"Unknown colour {name!r}; the palette is {', '.join(COLORS)}.")
    return COLORS[name]
