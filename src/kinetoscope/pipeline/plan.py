"""Every generation mode as a plan for the one sampler, and the making of the output from the decoded clip.

A :class:`Plan` says which given frames sit where in the sampled clip (their latents are
known), where sampling starts (noise, or an SDEdit source), and which part of the clip,
with which untouched originals around it, is the output. Each mode is a few lines below.

Placement rule, for a VAE that compresses time by ``tc`` (4): pixel frame 0 has a latent
frame of its own and frames ``1 + tc (j - 1) .. tc j`` share latent frame ``j``. Given frames
are encoded on their own (frame 0 alone, so an image is a one-frame video) and their latent
frames are placed whole: a segment placed at latent frame ``p`` shows its frame ``i`` at clip
frame ``tc p + i``. So an image asked for at frame ``k`` lands on latent frame
``ceil(k / tc)`` and is shown at frame ``tc ceil(k / tc)``, and the ``tc - 1`` frames before it,
decoded from the same latent frame, lead into it. Only the longest ``1 + tc m`` prefix of a
segment is encoded; every frame of it is pasted back over the decode (:func:`paste_given`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from kinetoscope.pipeline.limits import nearest_multiple


@dataclasses.dataclass(frozen=True)
class Segment:
    """Given frames uint8 ``(n, H, W, 3)``; ``frames[i]`` is clip frame ``at + i`` (``at`` is 0 or a multiple of tc)."""

    frames: np.ndarray
    at: int

    def encoded(self, tc: int) -> np.ndarray:
        """The frames whose latents are known: the longest ``1 + tc m`` prefix."""
        return self.frames[: 1 + tc * ((len(self.frames) - 1) // tc)]


@dataclasses.dataclass(frozen=True)
class Plan:
    #: Frames of the sampled clip, ``1 + tc k``.
    frames: int
    #: The clip's frames ``[start, stop)`` that are output.
    window: tuple[int, int]
    segments: tuple[Segment, ...] = ()
    #: Original frames output unchanged before / after the window (extension and connecting).
    before: np.ndarray | None = None
    after: np.ndarray | None = None
    #: SDEdit: the clip's frames sampling starts from, ``strength`` of the way from noise.
    source: np.ndarray | None = None
    strength: float = 1.0
    #: The clip's last frame is its first again (and is not output): the output plays in a loop.
    loop: bool = False


def grid_frames(frames: int, tc: int) -> int:
    """The fewest frames ``1 + tc k`` that hold ``frames``."""
    return 1 + tc * math.ceil(max(frames - 1, 0) / tc)


def context_frames(available: int, most: int, tc: int) -> int:
    """How many frames of a given video condition an extension: ``1 + tc m``, at most ``most``."""
    return 1 + tc * ((min(available, most) - 1) // tc)


# ---------------------------------------------------------------- the modes
def text_to_video(frames: int, tc: int) -> Plan:
    return Plan(grid_frames(frames, tc), (0, frames))


def animate(image: np.ndarray, at: int, frames: int, tc: int, notes: list[str]) -> Plan:
    """``image`` (one frame) at output frame ``at`` (0 <= at < frames). The clip is cut where it
    puts the image exactly at ``at``; when no cut can, the image moves to the nearest frame that
    ends a latent group, and a note says so."""
    clip = grid_frames(frames, tc)
    offset = next((o for o in range(clip - frames + 1) if (at + o) % tc == 0), None)
    if offset is None:
        offset = 0
        placed = min(nearest_multiple(at, tc), tc * ((frames - 1) // tc))
        notes.append(
            f"image_frame {at} moved to frame {placed}: frames {tc}j-{tc - 1}..{tc}j share one latent frame "
            f"and a given image is the last of its group"
        )
    else:
        placed = at + offset
    return Plan(clip, (offset, offset + frames), (Segment(image, placed),))


def extend_forward(video: np.ndarray, added: int, tc: int, context: int) -> Plan:
    """The whole video, then ``added`` new frames continuing its last ``context`` frames."""
    keep = context_frames(len(video), context, tc)
    split = len(video) - keep
    return Plan(grid_frames(keep + added, tc), (0, keep + added), (Segment(video[split:], 0),), before=video[:split])


def extend_backward(video: np.ndarray, added: int, tc: int, context: int) -> Plan:
    """``added`` new frames leading into the video's first ``context`` frames, then the whole video."""
    keep = context_frames(len(video), context, tc)
    lead = tc * math.ceil(added / tc)
    return Plan(lead + keep, (lead - added, lead + keep), (Segment(video[:keep], lead),), after=video[keep:])


def connect(a: np.ndarray, b: np.ndarray, frames: int, tc: int, context: int, notes: list[str]) -> Plan:
    """Video ``a``, a transition of about ``frames`` new frames, then video ``b``. The transition
    has ``tc k + tc - 1`` frames (``b``'s first latent frame ends a group); a note gives any rounding."""
    keep_a, keep_b = context_frames(len(a), context, tc), context_frames(len(b), context, tc)
    between = max(0, nearest_multiple(frames - (tc - 1), tc)) + tc - 1
    if between != frames:
        notes.append(f"transition of {frames} frames made {between} long (transitions have {tc}k + {tc - 1} frames)")
    at_b = keep_a + between
    split = len(a) - keep_a
    segments = (Segment(a[split:], 0), Segment(b[:keep_b], at_b))
    return Plan(at_b + keep_b, (0, at_b + keep_b), segments, before=a[:split], after=b[keep_b:])


def loop(frames: int, tc: int, notes: list[str], start: np.ndarray | None = None) -> Plan:
    """A clip of ``tc k`` frames whose frame after the last is its first; ``start``: its given first frames."""
    cycle = max(tc, nearest_multiple(frames, tc))
    if cycle != frames:
        notes.append(f"loop of {frames} frames made {cycle} long (loops have a multiple of {tc} frames)")
    segments = (Segment(start, 0),) if start is not None else ()
    return Plan(cycle + 1, (0, cycle), segments, loop=True)


def edit(video: np.ndarray, strength: float, tc: int) -> Plan:
    """SDEdit: sampling starts from the video (its last frame repeated up to the frame grid)."""
    clip = grid_frames(len(video), tc)
    source = np.concatenate([video, np.repeat(video[-1:], clip - len(video), axis=0)])
    return Plan(clip, (0, len(video)), source=source, strength=strength)


# ---------------------------------------------------------------- the output
def given_frames(plan: Plan) -> dict[int, np.ndarray]:
    """Clip frame -> the given frame pasted there."""
    return {s.at + i: frame for s in plan.segments for i, frame in enumerate(s.frames) if s.at + i < plan.frames}


def paste_given(decoded: np.ndarray, given: dict[int, np.ndarray], loop: bool) -> np.ndarray:
    """The decoded clip (float ``(F, H, W, 3)`` in 0..255) with the given frames pasted back exactly, as uint8.

    A pasted frame differs from its decode by the VAE's round-trip error; that difference is
    spread over the sampled frames next to it, fading linearly to the next given frame's own
    difference or to nothing at the clip's ends, so no seam shows where original and decode
    meet. In a loop the last clip frame is made equal to the first the same way, which closes
    the loop without a jump.
    """
    last = len(decoded) - 1
    residual = {i: frame.astype(np.float32) - decoded[i] for i, frame in given.items()}
    if loop:
        first = given[0].astype(np.float32) if 0 in given else decoded[0]
        residual[last] = first - decoded[last]
    zero = np.zeros_like(decoded[0])
    residual.setdefault(0, zero)
    residual.setdefault(last, zero)
    anchors = sorted(residual)
    out = decoded.astype(np.float32, copy=True)
    for a, b in itertools.pairwise(anchors):
        w = (np.arange(b - a, dtype=np.float32) / (b - a))[:, None, None, None]
        out[a:b] += (1 - w) * residual[a] + w * residual[b]
    out[last] += residual[last]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def output_frames(plan: Plan, decoded: np.ndarray, notes: list[str]) -> np.ndarray:
    """The output: originals before, the window of the pasted clip, originals after."""
    given = given_frames(plan)
    clip = paste_given(decoded, given, plan.loop)
    parts = [plan.before, clip[plan.window[0] : plan.window[1]], plan.after]
    frames = np.concatenate([p for p in parts if p is not None and len(p)])
    if plan.loop:
        frames, faded = ease_loop_seam(frames, fixed=len(given))
        if faded:
            notes.append(f"the last {faded} frames fade towards the first so the loop has no visible seam")
    return frames


def loop_steps(frames: np.ndarray) -> tuple[float, float]:
    """The wrap's step (last frame to first) and the median step between neighbouring frames, RMS in 0..255."""
    x = frames.astype(np.float32)
    steps = np.sqrt(np.square(np.diff(x, axis=0)).mean(axis=(1, 2, 3)))
    return float(np.sqrt(np.square(x[0] - x[-1]).mean())), float(np.median(steps))


def ease_loop_seam(frames: np.ndarray, fixed: int) -> tuple[np.ndarray, int]:
    """Make the wrap no larger than the median step: when the sampled loop leaves a larger one,
    fade the fewest last frames needed towards the first frame (never the ``fixed`` given ones).
    Returns the frames and how many were faded (0: the loop was already seamless)."""
    if len(frames) < 3:
        return frames, 0
    x = frames.astype(np.float32)
    for k in range(1, len(frames) - max(fixed, 1) + 1):
        seam, median = loop_steps(frames)
        if seam <= median:
            return frames, k - 1
        w = (np.arange(1, k + 1, dtype=np.float32) / (k + 1))[:, None, None, None]
        frames = frames.copy()
        frames[-k:] = np.rint((1 - w) * x[-k:] + w * x[0]).astype(np.uint8)
    return frames, len(frames) - max(fixed, 1)
