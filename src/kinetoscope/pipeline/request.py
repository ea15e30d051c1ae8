"""One call's arguments checked against the model and turned into a plan, before anything is computed.

:class:`Request` holds the arguments of ``Pipeline.__call__`` and knows which mode they ask for;
:func:`plan_request` reads the given media, settles the size, frame rate and lengths, and hands
each mode to its planner in :mod:`kinetoscope.pipeline.plan`. Every mistake is refused here
with one sentence (:class:`~kinetoscope.errors.InvalidInputError` or ``MediaError``).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from kinetoscope.errors import InvalidInputError
from kinetoscope.io.frames import check_fps
from kinetoscope.pipeline import plan as plans
from kinetoscope.pipeline.limits import DEFAULT_SECONDS, Limits, frames_for, nearest_multiple
from kinetoscope.pipeline.media import Media, fit_frames, load_image, load_video

if TYPE_CHECKING:
    from kinetoscope.safety import PromptPolicy

DIRECTIONS = ("forward", "backward")
#: Frames of a given video that condition an extension or a transition (its last or first ones).
CONTEXT_FRAMES = 17
#: Sampling steps and classifier-free guidance when a call does not say.
DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = 5.0
#: Default SDEdit strengths: an edit keeps layout and motion; an upscale keeps nearly everything.
EDIT_STRENGTH = 0.7
UPSCALE_STRENGTH = 0.6


@dataclasses.dataclass(frozen=True)
class Request:
    """The arguments of one ``Pipeline.__call__`` (see there)."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    seconds: float | None = None
    fps: float | None = None
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    guidance_rescale: float = 0.0
    seed: int | None = None
    expand: bool = True
    image: Media | None = None
    image_frame: int = 0
    video: Media | None = None
    direction: str | None = None
    loop: bool = False
    strength: float | None = None
    video_b: Media | None = None

    @property
    def mode(self) -> str:
        """``generate``, ``animate``, ``extend``, ``loop``, ``edit`` or ``connect``; contradictions are refused."""
        if self.image is not None and self.video is not None:
            raise InvalidInputError("Give an image or a video, not both.", param="image")
        if self.video_b is not None and self.video is None:
            raise InvalidInputError("Connecting needs the first video too: give video and video_b.", param="video")
        for name in ("strength", "direction"):
            if getattr(self, name) is not None and self.video is None:
                raise InvalidInputError(f"{name} applies to a given video: give a video as well.", param=name)
        asked = [name for name in ("strength", "video_b", "direction") if getattr(self, name) is not None]
        asked = ["loop"] * bool(self.loop) + asked
        if len(asked) > 1:
            raise InvalidInputError(f"{' and '.join(asked)} ask for different modes; give one of them.", param=asked[1])
        if self.loop:
            return "loop"
        if self.image is not None:
            return "animate"
        if self.video is None:
            return "generate"
        return "edit" if self.strength is not None else "connect" if self.video_b is not None else "extend"

    def check(self) -> None:
        """The checks that need no file: prompt and sampling settings."""
        frames_given = self.image is not None or self.video is not None
        check_prompt(self.prompt, "prompt", allow_empty=frames_given)  # a transition may go unnamed
        if self.negative_prompt is not None:
            check_prompt(self.negative_prompt, "negative_prompt", allow_empty=True)
        if not _whole(self.steps) or self.steps < 1:
            raise InvalidInputError(f"steps must be a whole number of at least 1, got {self.steps!r}.", param="steps")
        if not (_number(self.guidance) and self.guidance >= 0):
            raise InvalidInputError(
                f"guidance must be a number of at least 0, got {self.guidance!r}.", param="guidance"
            )
        if not (_number(self.guidance_rescale) and 0 <= self.guidance_rescale <= 1):
            raise InvalidInputError(
                f"guidance_rescale must be between 0 and 1, got {self.guidance_rescale!r}.", param="guidance_rescale"
            )
        if self.seed is not None and not (_whole(self.seed) and 0 <= self.seed < 2**63):
            raise InvalidInputError(
                f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}.", param="seed"
            )
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise InvalidInputError(
                f"direction must be forward or backward, got {self.direction!r}.", param="direction"
            )
        if self.num_frames is not None and self.seconds is not None:
            raise InvalidInputError("Give num_frames or seconds, not both.", param="seconds")


@dataclasses.dataclass
class Job:
    """A checked request: the plan and what sampling and the result need."""

    plan: plans.Plan
    width: int
    height: int
    fps: float
    seed: int
    notes: list[str]


@dataclasses.dataclass
class _Inputs:
    """What every mode's planner works from: the request, the given frames at the working size, the fps."""

    request: Request
    limits: Limits
    given: np.ndarray | None
    fps: float
    fit: Callable[[np.ndarray, str], np.ndarray]
    notes: list[str]

    @property
    def tc(self) -> int:
        return self.limits.frame_multiple

    def length(self, default: int, most: int) -> int:
        """Frames asked for with ``num_frames`` or ``seconds`` (else ``default``), at most ``most``."""
        r = self.request
        if r.num_frames is not None:
            return self.limits.check_frames(r.num_frames, "num_frames", most)
        if r.seconds is None:
            return default
        frames = frames_for(r.seconds, self.fps)
        if frames > most:
            raise InvalidInputError(
                f"seconds {r.seconds:g} is {frames} frames at {self.fps:g} fps; this makes at most {most} "
                f"({most / self.fps:g} s).",
                param="seconds",
            )
        return frames


def plan_request(request: Request, limits: Limits) -> Job:
    """Read the given media of a checked request, settle size, fps and lengths, and plan the mode."""
    mode = request.mode
    given, given_fps = None, None
    if request.image is not None:
        given = load_image(request.image)
    elif request.video is not None:
        given, given_fps = load_video(request.video, "video")
    notes: list[str] = []
    width, height = _size(request, limits, given, notes)
    fps = check_fps(request.fps if request.fps is not None else given_fps or limits.default_fps)

    def fit(frames: np.ndarray, name: str) -> np.ndarray:
        return fit_frames(frames, width, height, name, notes)

    plan = _PLANNERS[mode](_Inputs(request, limits, given, fps, fit, notes))
    seed = secrets.randbelow(2**31) if request.seed is None else request.seed
    return Job(plan, width, height, fps, seed, notes)


# ---------------------------------------------------------------- each mode: check, then plan
def _generate(i: _Inputs) -> plans.Plan:
    return plans.text_to_video(i.length(i.limits.default_frames, i.limits.max_frames), i.tc)


def _animate(i: _Inputs) -> plans.Plan:
    frames = i.length(i.limits.default_frames, i.limits.max_frames)
    at = check_image_frame(i.request.image_frame, frames)
    return plans.animate(i.fit(i.given, "image"), at, frames, i.tc, i.notes)


def _loop(i: _Inputs) -> plans.Plan:
    if i.request.image is not None:
        check_image_frame(i.request.image_frame, i.limits.max_frames, loop=True)
    cycle = i.length(i.limits.default_frames - 1, i.limits.max_frames - 1)
    start = None if i.given is None else i.fit(i.given, "video")
    if start is not None and len(start) >= cycle:
        raise InvalidInputError(
            f"The loop is {cycle} frames long but the video has {len(start)}; ask for a longer loop.", param="video"
        )
    return plans.loop(cycle, i.tc, i.notes, start)


def _edit(i: _Inputs) -> plans.Plan:
    r = i.request
    if r.num_frames is not None or r.seconds is not None:
        raise InvalidInputError("An edit keeps the video's length; leave out num_frames and seconds.", param="seconds")
    if not (_number(r.strength) and 0 < r.strength <= 1):
        raise InvalidInputError(f"strength must be above 0 and at most 1, got {r.strength!r}.", param="strength")
    i.limits.check_frames(len(i.given), "video frames")
    return plans.edit(i.fit(i.given, "video"), float(r.strength), i.tc)


def _extend(i: _Inputs) -> plans.Plan:
    """``seconds`` is the time added; ``num_frames`` the whole output's length (what the evaluation asks)."""
    check_moving(len(i.given), "video")
    total, have, most = i.request.num_frames, len(i.given), i.limits.max_frames - CONTEXT_FRAMES
    if total is None:
        added = i.length(frames_for(DEFAULT_SECONDS, i.fps), most)
    elif _whole(total) and have < total <= have + most:
        added = total - have
    else:
        raise InvalidInputError(
            f"num_frames {total!r} must be more than the video's {have} frames and at most {have + most}.",
            param="num_frames",
        )
    extend = plans.extend_backward if i.request.direction == "backward" else plans.extend_forward
    return extend(i.fit(i.given, "video"), added, i.tc, CONTEXT_FRAMES)


def _connect(i: _Inputs) -> plans.Plan:
    b, _ = load_video(i.request.video_b, "video_b")
    check_moving(len(i.given), "video")
    check_moving(len(b), "video_b")
    between = i.length(frames_for(DEFAULT_SECONDS, i.fps), i.limits.max_frames - 2 * CONTEXT_FRAMES)
    return plans.connect(i.fit(i.given, "video"), i.fit(b, "video_b"), between, i.tc, CONTEXT_FRAMES, i.notes)


_PLANNERS: dict[str, Callable[[_Inputs], plans.Plan]] = {
    "generate": _generate,
    "animate": _animate,
    "loop": _loop,
    "edit": _edit,
    "extend": _extend,
    "connect": _connect,
}


# ---------------------------------------------------------------- helpers
def _size(request: Request, limits: Limits, given: np.ndarray | None, notes: list[str]) -> tuple[int, int]:
    """The working size: as asked (rounded to the grid), else the given media's (fitted), else the default."""
    if given is None:
        default = (limits.default_width, limits.default_height)
    else:
        h, w = given.shape[1:3]
        scale = min(1.0, limits.max_width / w, limits.max_height / h)
        default = (_on_grid(w * scale, limits.min_width, limits.max_width, limits.size_multiple),
                   _on_grid(h * scale, limits.min_height, limits.max_height, limits.size_multiple))  # fmt: skip
    width = default[0] if request.width is None else limits.fit_side("width", request.width, notes)
    height = default[1] if request.height is None else limits.fit_side("height", request.height, notes)
    return width, height


def _on_grid(side: float, low: int, high: int, multiple: int) -> int:
    return min(high, max(low, nearest_multiple(side, multiple)))


def check_text(text: Any, name: str, *, allow_empty: bool = False, max_chars: int | None = None) -> str:
    """The one rule for a prompt-like field (prompt, negative prompt, remix prompt), for the
    library, the command line and the service: valid Unicode text, within ``max_chars``, and
    unless ``allow_empty`` something other than spaces, control or invisible characters."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{name} must be text describing the video, got {text!r}.", param=name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(
            f"{name} is not valid Unicode: it holds a lone surrogate (U+{ord(text[e.start]):04X}) at character {e.start}.",
            param=name,
        ) from None
    if max_chars is not None and len(text) > max_chars:
        raise InvalidInputError(f"{name} has {len(text)} characters; the limit is {max_chars}.", param=name)
    # Letters, marks, numbers, punctuation and symbols; not separators (Z*) or controls and format characters (C*).
    if not allow_empty and not any(unicodedata.category(c)[0] not in "CZ" for c in text):
        raise InvalidInputError(f"{name} is empty; describe the video to make.", param=name)
    return text


def check_prompt(
    text: Any, name: str, *, allow_empty: bool = False, max_chars: int | None = None, policy: PromptPolicy | None = None
) -> str:
    """The one gate of every prompt-like field, in the library and the service alike: :func:`check_text`,
    then the content policy (``policy``, else :func:`kinetoscope.safety.load_policy`'s), before any compute."""
    check_text(text, name, allow_empty=allow_empty, max_chars=max_chars)
    if policy is None:
        from kinetoscope.safety import load_policy

        policy = load_policy()
    policy.enforce(text, name)
    return text


def check_image_frame(at: Any, frames: int, *, loop: bool = False) -> int:
    """Where a given image goes in a clip of ``frames`` frames (0, -1 = the last, or any), as an
    index from 0; a loop starts with its image. For the library and the service alike."""
    if loop:
        if at != 0:
            raise InvalidInputError("A loop starts with its image: leave image_frame at 0.", param="image_frame")
        return 0
    if not (_whole(at) and -frames <= at < frames):
        raise InvalidInputError(
            f"image_frame {at!r} is outside the {frames} frames; use 0 to {frames - 1}, or -1 for the last.",
            param="image_frame",
        )
    return at % frames


def check_moving(frames: int, name: str) -> None:
    """Extending or connecting continues motion: ``name`` needs at least 2 frames (library and service alike)."""
    if frames < 2:
        raise InvalidInputError(
            f"{name} has {frames} frame; extending or connecting needs a video of at least 2 frames "
            "(animate a single image instead).",
            param=name,
        )


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
