"""What the loaded model can make, and the parsing of ``size`` and ``seconds`` against it.

The OpenAI SDK sends ``size`` as "720x1280" and ``seconds`` as "4"; any string that parses
and that the model can do is accepted, anything else is refused with what it can do.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from kinetoscope.errors import InvalidInputError

_SIZE = re.compile(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*")
#: Aspect ratios offered as ready-made sizes (width, height).
_ASPECTS = ((1, 1), (16, 9), (9, 16), (4, 3), (3, 4))


@dataclasses.dataclass(frozen=True)
class Capabilities:
    model: str
    size_multiple: int
    min_width: int
    max_width: int
    min_height: int
    max_height: int
    max_frames: int
    #: Frame counts are ``1 + frame_multiple * k`` (the VAE compresses time by this factor).
    frame_multiple: int
    fps: float
    default_size: str

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> Capabilities:
        limits = pipeline.limits
        return cls(
            model=pipeline.model_id,
            size_multiple=limits.size_multiple,
            min_width=limits.min_width,
            max_width=limits.max_width,
            min_height=limits.min_height,
            max_height=limits.max_height,
            max_frames=limits.max_frames,
            frame_multiple=limits.frame_multiple,
            fps=float(limits.default_fps),
            default_size=f"{limits.default_width}x{limits.default_height}",
        )

    # ---------------------------------------------------------------- sizes
    def sizes(self) -> list[str]:
        """Ready-made sizes: each aspect ratio at the largest size the model can make."""
        found: list[str] = []
        for aspect_w, aspect_h in _ASPECTS:
            scale = min(self.max_width / aspect_w, self.max_height / aspect_h)
            width, height = self._round(aspect_w * scale), self._round(aspect_h * scale)
            size = f"{width}x{height}"
            if self._fits(width, height) and size not in found:
                found.append(size)
        return found

    def parse_size(self, text: Any, param: str = "size") -> tuple[int, int]:
        match = _SIZE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidInputError(f"{param} must be WIDTHxHEIGHT such as {self.default_size}, got {text!r}.", param=param)
        width, height = int(match[1]), int(match[2])
        if not self._fits(width, height):
            raise InvalidInputError(
                f"{param} {width}x{height} is not a size this model can make: it makes {self.size_rule()}, "
                f"for example {', '.join(self.sizes())}.",
                param=param,
            )
        return width, height

    def size_rule(self) -> str:
        return (
            f"widths {self.min_width} to {self.max_width} and heights {self.min_height} to {self.max_height}, "
            f"each a multiple of {self.size_multiple}"
        )

    def _round(self, value: float) -> int:
        return int(value // self.size_multiple) * self.size_multiple

    def _fits(self, width: int, height: int) -> bool:
        return (
            width % self.size_multiple == 0
            and height % self.size_multiple == 0
            and self.min_width <= width <= self.max_width
            and self.min_height <= height <= self.max_height
        )

    # ---------------------------------------------------------------- durations
    @property
    def max_seconds(self) -> float:
        return (self.max_frames - 1) / self.fps

    def durations(self) -> list[str]:
        """Whole seconds the model can make (any number of seconds up to ``max_seconds`` works too)."""
        whole = [str(s) for s in range(1, math.floor(self.max_seconds + 1e-9) + 1)]
        return whole or [f"{self.max_seconds:g}"]

    @property
    def default_seconds(self) -> str:
        """OpenAI's default of 4 seconds, or the longest whole duration below it that the model can make."""
        durations = self.durations()
        return durations[min(4, len(durations)) - 1]

    def parse_seconds(self, value: Any, param: str = "seconds") -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds):
            raise InvalidInputError(
                f"{param} must be a positive number of seconds such as {self.default_seconds!r}, got {value!r}.",
                param=param,
            )
        if self.num_frames(seconds) > self.max_frames:
            raise InvalidInputError(
                f"{param} {value!r} is longer than this model can make: it makes up to {self.max_seconds:g} s "
                f"at {self.fps:g} fps; use one of {', '.join(self.durations())} (or any number up to {self.max_seconds:g}).",
                param=param,
            )
        return seconds

    def num_frames(self, seconds: float) -> int:
        """Frames for ``seconds`` at the model's fps, on the ``1 + frame_multiple * k`` grid (at least 1 + that)."""
        steps = max(1, round(seconds * self.fps / self.frame_multiple))
        return 1 + self.frame_multiple * steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sizes": self.sizes(),
            "size_rule": self.size_rule(),
            "default_size": self.default_size,
            "seconds": self.durations(),
            "max_seconds": self.max_seconds,
            "default_seconds": self.default_seconds,
            "fps": self.fps,
        }
