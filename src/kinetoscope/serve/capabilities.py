"""What the loaded model can make, and the parsing of ``size`` and ``seconds`` against it.

The OpenAI SDK sends ``size`` as "720x1280" and ``seconds`` as "4"; any string that parses
and that the model can do is accepted, anything else is refused with what it can do. The
numbers come from the pipeline's :class:`~kinetoscope.pipeline.Limits`; a duration is
``round(seconds * fps)`` frames, as the pipeline counts it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from kinetoscope.errors import InvalidInputError
from kinetoscope.pipeline import Limits
from kinetoscope.pipeline.limits import frames_for, parse_size
from kinetoscope.pipeline.request import DEFAULT_STEPS, EDIT_STRENGTH

# ASCII digits only: float() also reads other scripts' digits and "1_0".
_SECONDS = re.compile(r"\s*[0-9]+(?:\.[0-9]*)?\s*|\s*\.[0-9]+\s*")
#: Aspect ratios offered as ready-made sizes (width, height), each at a few scales.
_ASPECTS = ((1, 1), (16, 9), (9, 16))
_SCALES = (1, 2, 4)
#: OpenAI's default duration.
_OPENAI_DEFAULT_SECONDS = 4


@dataclasses.dataclass(frozen=True)
class Capabilities:
    model: str
    limits: Limits
    guidance: float  # the model's own, what a request that names none gets

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> Capabilities:
        return cls(pipeline.model_id, pipeline.limits, pipeline.guidance)

    @property
    def fps(self) -> float:
        return float(self.limits.default_fps)

    # ---------------------------------------------------------------- sizes
    @property
    def default_size(self) -> str:
        return f"{self.limits.default_width}x{self.limits.default_height}"

    def sizes(self) -> list[str]:
        """Ready-made sizes: square, landscape and portrait at 1, 2 and 4 times the default area."""
        limits, found = self.limits, []
        for scale in _SCALES:
            area = limits.default_width * limits.default_height * scale * scale
            for aspect_w, aspect_h in _ASPECTS:
                unit = math.sqrt(area / (aspect_w * aspect_h))
                width, height = self._on_grid(aspect_w * unit), self._on_grid(aspect_h * unit)
                size = f"{width}x{height}"
                if self._fits(width, height) and size not in found:
                    found.append(size)
        return found

    def parse_size(self, text: Any, param: str = "size") -> tuple[int, int]:
        width, height = parse_size(text, param)
        if not self._fits(width, height):
            raise InvalidInputError(
                f"{param} {width}x{height} is not a size this model can make: it makes {self.size_rule()}, "
                f"for example {', '.join(self.sizes())}.",
                param=param,
            )
        return width, height

    def size_rule(self) -> str:
        limits = self.limits
        return (
            f"widths {limits.min_width} to {limits.max_width} and heights {limits.min_height} to {limits.max_height}, "
            f"each a multiple of {limits.size_multiple}"
        )

    def _on_grid(self, side: float) -> int:
        return max(1, round(side / self.limits.size_multiple)) * self.limits.size_multiple

    def _fits(self, width: int, height: int) -> bool:
        limits = self.limits
        return (
            width % limits.size_multiple == 0
            and height % limits.size_multiple == 0
            and limits.min_width <= width <= limits.max_width
            and limits.min_height <= height <= limits.max_height
        )

    # ---------------------------------------------------------------- durations
    def max_seconds(self, most_frames: int | None = None) -> float:
        return (self.limits.max_frames if most_frames is None else most_frames) / self.fps

    def durations(self, most_frames: int | None = None) -> list[str]:
        """Whole seconds the model can make (any number of seconds up to :meth:`max_seconds` works too)."""
        whole = [str(s) for s in range(1, math.floor(self.max_seconds(most_frames) + 1e-9) + 1)]
        return whole or [f"{self.max_seconds(most_frames):g}"]

    @property
    def default_seconds(self) -> str:
        """OpenAI's default of 4 seconds, or the longest whole duration below it that the model can make."""
        durations = self.durations()
        return durations[min(_OPENAI_DEFAULT_SECONDS, len(durations)) - 1]

    def parse_seconds(self, value: Any, param: str = "seconds", most_frames: int | None = None) -> float:
        """A positive duration of at most ``most_frames`` (default: the model's longest clip) at the model's fps."""
        if isinstance(value, str) and _SECONDS.fullmatch(value):
            seconds = float(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:  # true, "1_0", "١٠", "1e3", "inf": not the forms the SDK sends
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds):
            raise InvalidInputError(
                f"{param} must be a positive number of seconds such as {self.default_seconds!r}, got {value!r}.",
                param=param,
            )
        most = self.limits.max_frames if most_frames is None else most_frames
        if frames_for(seconds, self.fps) > most:
            longest = self.max_seconds(most)
            raise InvalidInputError(
                f"{param} {value!r} is longer than this model can make here: up to {longest:g} s at {self.fps:g} fps; "
                f"use one of {', '.join(self.durations(most))} (or any number up to {longest:g}).",
                param=param,
            )
        return seconds

    def num_frames(self, seconds: float) -> int:
        return frames_for(seconds, self.fps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sizes": self.sizes(),
            "size_rule": self.size_rule(),
            "default_size": self.default_size,
            "seconds": self.durations(),
            "max_seconds": self.max_seconds(),
            "default_seconds": self.default_seconds,
            "fps": self.fps,
            # The request layer's defaults, so the page suggests what an empty field means.
            "defaults": {"steps": DEFAULT_STEPS, "guidance": self.guidance, "strength": EDIT_STRENGTH},
        }


def seconds_text(seconds: float) -> str:
    """A duration as the Video object's ``seconds`` string: "4", "2.5"."""
    return f"{round(seconds, 2):g}"
