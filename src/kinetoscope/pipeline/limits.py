"""What a model can make (sizes, frame counts, frame rate) and the checks of a request against it.

A width or height that is in range but not on the model's grid is rounded to the nearest
multiple and the rounding is reported in ``notes``; anything out of range is refused with one
sentence. Durations are never rounded: a clip is sampled on the ``1 + 4k`` frame grid and
then cut to the frames asked for.
"""

from __future__ import annotations

import dataclasses
import math
import re

from kinetoscope.errors import InvalidInputError

#: Largest side of an image or video, in pixels (an image of 2048x2048 decodes in VAE tiles).
MAX_SIDE = 2048
#: Longest clip sampled in one go, in latent frames after the first (129 frames at 4x).
MAX_LATENT_STEPS = 32
DEFAULT_SIDE = 128
DEFAULT_FPS = 10.0
DEFAULT_SECONDS = 2.0


#: ``WIDTHxHEIGHT`` in ASCII digits (``re``'s ``\d`` would also take other scripts' digits).
_SIZE = re.compile(r"\s*([0-9]{1,5})\s*[xX×]\s*([0-9]{1,5})\s*")


def parse_size(text: object, param: str = "size") -> tuple[int, int]:
    """``"256x144"`` -> ``(256, 144)``, width first: the one grammar of a size, for the command line
    and the service (whether the model can make it is :class:`Limits`'s question)."""
    match = _SIZE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInputError(f"{param} must be WIDTHxHEIGHT, for example 128x128, got {text!r}.", param=param)
    return int(match[1]), int(match[2])


@dataclasses.dataclass(frozen=True)
class Limits:
    """Sizes are multiples of ``size_multiple`` (VAE compression x patch) within the min/max;
    frame counts of one sampled clip are ``1 + frame_multiple * k`` up to ``max_frames``."""

    size_multiple: int
    min_width: int
    max_width: int
    min_height: int
    max_height: int
    max_frames: int
    frame_multiple: int
    default_fps: float
    default_width: int
    default_height: int
    default_frames: int

    @classmethod
    def for_model(cls, spatial_compression: int, temporal_compression: int, patch_size: tuple[int, int, int]) -> Limits:
        multiple = math.lcm(spatial_compression * patch_size[1], spatial_compression * patch_size[2])
        largest = MAX_SIDE // multiple * multiple
        default = max(multiple, min(largest, DEFAULT_SIDE // multiple * multiple))
        tc = temporal_compression
        return cls(
            size_multiple=multiple,
            min_width=multiple,
            max_width=largest,
            min_height=multiple,
            max_height=largest,
            max_frames=1 + tc * MAX_LATENT_STEPS,
            frame_multiple=tc,
            default_fps=DEFAULT_FPS,
            default_width=default,
            default_height=default,
            default_frames=1 + tc * max(1, round(DEFAULT_SECONDS * DEFAULT_FPS / tc)),
        )

    @property
    def frame_rule(self) -> str:
        return f"1 + {self.frame_multiple}k"

    def fit_side(self, name: str, value: int, notes: list[str]) -> int:
        """``value`` on the size grid; rounding is noted, a value out of range is refused."""
        low, high = (self.min_width, self.max_width) if name == "width" else (self.min_height, self.max_height)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidInputError(
                f"{name} {value!r} is not a size this model can make: use {low} to {high} pixels "
                f"(a multiple of {self.size_multiple}).",
                param=name,
            )
        rounded = min(high, max(low, nearest_multiple(value, self.size_multiple)))
        if rounded != value:
            notes.append(f"{name} {value} rounded to {rounded} (a multiple of {self.size_multiple})")
        return rounded

    def check_frames(self, frames: int, what: str = "num_frames", most: int | None = None) -> int:
        most = self.max_frames if most is None else most
        if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= most:
            raise InvalidInputError(f"{what} {frames!r} is not possible here: use 1 to {most} frames.", param=what)
        return frames


def frames_for(seconds: float, fps: float) -> int:
    """Frames lasting ``seconds`` at ``fps`` (each frame lasts ``1 / fps``), at least one."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise InvalidInputError(f"seconds must be a positive number, got {seconds!r}.", param="seconds")
    return max(1, round(seconds * fps))


def nearest_multiple(value: float, multiple: int) -> int:
    """The multiple of ``multiple`` nearest to ``value``; halfway rounds up (40 -> 48 for 16)."""
    return math.floor(value / multiple + 0.5) * multiple
