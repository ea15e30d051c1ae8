"""Rectified flow: noising, time sampling and shift, the loss, condition masks, and the sampler.

Conventions: ``x_t = (1 - t) x_0 + t e``; the model predicts the velocity
``v = e - x_0``; sampling integrates from t = 1 (noise) to t = 0 (data). Everything here works
on packed tokens ``(N, F)`` with a time per token, so frames given as conditions simply sit at
t = 0 while the rest are noisy.

One sampling loop, :func:`sample`, serves every generation mode: text-to-video (nothing
known), image-to-video, extension, loops, connecting and keyframes (``known`` latents and a
``known_mask`` re-imposed at every step), loops without a given frame (``tied`` tokens held
equal to others), and editing (``start`` + ``strength``, SDEdit).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from kinetoscope.config import Config
from kinetoscope.errors import ConfigError, InvalidInputError

MASK_KINDS = ("none", "first", "first_k", "last", "first_last", "keyframes")
SAMPLERS = ("euler", "heun")

#: ``velocity(x, t)``: tokens ``(N, F)`` and per-token times ``(N,)`` -> velocity ``(N, F)``.
VelocityFn = Callable[[Tensor, Tensor], Tensor]


@dataclasses.dataclass
class FlowConfig(Config):
    """The choices of rectified flow a model is trained, and sampled, with.

    Time: ``t = sigmoid(normal(logit_mean, logit_std))``, then shifted towards noise by ``s``,
    where ``log s`` grows linearly in ``log(tokens)`` from ``shift_at_base`` at ``base_tokens``
    to ``shift_at_max`` at ``max_tokens`` (and keeps growing past it): bigger videos need more
    noise to hide the same structure. ``sample_shift``: a further shift of the sampler's times
    only (shifts compose by multiplying), because a small model may lay out its objects better
    with more of its steps at high noise than it was trained with. ``mask_*``: probabilities of
    each kind of known-frame mask drawn per sample in training (normalised to sum to 1).
    """

    logit_mean: float = 0.0
    logit_std: float = 1.0
    base_tokens: int = 256
    max_tokens: int = 4096
    shift_at_base: float = 1.0
    shift_at_max: float = 3.0
    sample_shift: float = 1.0
    text_dropout: float = 0.1
    mask_none: float = 0.5
    mask_first: float = 0.2
    mask_first_k: float = 0.1
    mask_last: float = 0.05
    mask_first_last: float = 0.1
    mask_keyframes: float = 0.05

    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}

    def __post_init__(self) -> None:
        if not 0 <= self.text_dropout <= 1:
            raise ConfigError(f"FlowConfig.text_dropout is {self.text_dropout}; it must be in [0, 1].")
        if min(self.shift_at_base, self.shift_at_max, self.sample_shift) <= 0 or not 0 < self.base_tokens < self.max_tokens:
            raise ConfigError("FlowConfig shifts must be positive and 0 < base_tokens < max_tokens.")
        probs = self.mask_probabilities
        if min(probs.values()) < 0 or sum(probs.values()) <= 0:
            raise ConfigError(f"FlowConfig mask probabilities must be non-negative and not all zero, got {probs}.")

    @property
    def mask_probabilities(self) -> dict[str, float]:
        return {kind: getattr(self, f"mask_{kind}") for kind in MASK_KINDS}


# --- time ------------------------------------------------------------------------------


def sample_time(n: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """``n`` logit-normal times, strictly inside (0, 1)."""
    t = torch.sigmoid(torch.randn(n, generator=generator) * std + mean)
    tiny = torch.finfo(t.dtype).eps
    return t.clamp(tiny, 1 - tiny)


def shift(t: Tensor, s: float) -> Tensor:
    """``s t / (1 + (s - 1) t)``: keeps 0 and 1, moves the middle towards 1 (more noise) when s > 1."""
    return s * t / (1 + (s - 1) * t)


def shift_for_tokens(n: int, config: FlowConfig | None = None) -> float:
    """The time shift for a sample of ``n`` tokens; ``log s`` is linear in ``log n``."""
    config = config or FlowConfig()
    slope = (math.log(config.shift_at_max) - math.log(config.shift_at_base)) / math.log(
        config.max_tokens / config.base_tokens
    )
    return math.exp(math.log(config.shift_at_base) + slope * math.log(max(n, 1) / config.base_tokens))


def sampling_shift(n: int, config: FlowConfig | None = None) -> float:
    """The sampler's time shift for ``n`` tokens: training's, shifted further by ``config.sample_shift``."""
    config = config or FlowConfig()
    return shift_for_tokens(n, config) * config.sample_shift


def timesteps(steps: int, s: float = 1.0) -> Tensor:
    """``steps + 1`` times from 1 to 0 for sampling, evenly spaced then shifted."""
    if steps < 1:
        raise InvalidInputError(f"The number of sampling steps must be at least 1, got {steps}.")
    return shift(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), s).float()


# --- training ---------------------------------------------------------------------------


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_t, target velocity)`` for tokens ``(N, F)`` at per-token times ``(N,)``."""
    t = t.to(x0.dtype)[:, None]
    return torch.lerp(x0, noise, t), noise - x0


def flow_loss(
    model_out: Tensor, target: Tensor, loss_mask: Tensor | None = None, weight: Tensor | None = None
) -> Tensor:
    """Mean squared velocity error over the tokens in ``loss_mask`` (known frames are left out),
    each token counted ``weight`` times (``(N,)``; default once)."""
    error = (model_out.float() - target.float()).square().mean(dim=-1)
    counts = torch.ones_like(error) if weight is None else weight.to(error)
    if loss_mask is not None:
        counts = counts * loss_mask
    return (error * counts).sum() / counts.sum().clamp(min=1e-12)


def condition_mask(kind: str, frames: int, generator: torch.Generator | None = None, k: int | None = None) -> Tensor:
    """Known latent frames ``(frames,)`` bool for one kind of conditioning.

    ``first``: frame 0 (image-to-video); ``first_k``: frames ``0..k-1`` (extend forwards);
    ``last``: the last ``k`` (extend backwards); ``first_last``: both ends (loops, connecting);
    ``keyframes``: a random subset. ``k`` (random when not given) is kept below ``frames``, so at
    least one frame is always left to generate; one-frame samples (images) get ``none``.
    """
    if kind not in MASK_KINDS:
        raise InvalidInputError(f"Unknown condition mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}.")
    mask = torch.zeros(frames, dtype=torch.bool)
    if kind == "none" or frames < 2:
        return mask
    if k is None:
        k = int(torch.randint(1, frames, (1,), generator=generator))
    k = min(max(k, 1), frames - 1)
    if kind == "first":
        mask[0] = True
    elif kind == "first_k":
        mask[:k] = True
    elif kind == "last":
        mask[-k:] = True
    elif kind == "first_last":
        mask[0] = True
        mask[-1] = frames > 2  # with two frames, keeping both would leave nothing to generate
    else:
        mask[torch.randperm(frames, generator=generator)[:k]] = True
    return mask


def draw_condition_mask(
    frames: int, generator: torch.Generator | None = None, config: FlowConfig | None = None
) -> Tensor:
    """A known-frame mask of a random kind, drawn with the config's probabilities."""
    probs = (config or FlowConfig()).mask_probabilities
    weights = torch.tensor([probs[kind] for kind in MASK_KINDS], dtype=torch.float64)
    kind = MASK_KINDS[int(torch.multinomial(weights, 1, generator=generator))]
    return condition_mask(kind, frames, generator)


def drop_text(prompts: Sequence[str], p: float, generator: torch.Generator | None = None) -> list[str]:
    """Replace each prompt by the empty prompt with probability ``p`` (classifier-free guidance)."""
    keep = torch.rand(len(prompts), generator=generator) >= p
    return [prompt if kept else "" for prompt, kept in zip(prompts, keep.tolist())]


# --- sampling ---------------------------------------------------------------------------


def guide(
    cond: Tensor, uncond: Tensor, guidance: float, rescale: float = 0.0, seq_lens: Sequence[int] | None = None
) -> Tensor:
    """Classifier-free guidance, optionally rescaled towards the conditional's std per sample
    (Lin et al. 2023, "Common diffusion noise schedules and sample steps are flawed")."""
    guided = uncond + guidance * (cond - uncond)
    if rescale <= 0:
        return guided
    lens = list(seq_lens) if seq_lens is not None else [cond.shape[0]]
    parts = []
    for c, g in zip(cond.split(lens), guided.split(lens)):
        parts.append(rescale * g * (c.std() / g.std().clamp(min=1e-12)) + (1 - rescale) * g)
    return torch.cat(parts)


@torch.no_grad()
def sample(
    velocity: VelocityFn,
    noise: Tensor,
    steps: int,
    *,
    time_shift: float = 1.0,
    method: str = "euler",
    uncond_velocity: VelocityFn | None = None,
    guidance: float = 1.0,
    guidance_rescale: float = 0.0,
    seq_lens: Sequence[int] | None = None,
    known: Tensor | None = None,
    known_mask: Tensor | None = None,
    tied: tuple[Tensor, Tensor] | None = None,
    start: Tensor | None = None,
    strength: float = 1.0,
    callback: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Integrate from noise to data; returns clean tokens ``(N, F)``.

    ``velocity(x, t)`` is the conditional model; with ``guidance != 1`` the unconditional one is
    mixed in (guidance 1 calls only the conditional). ``known`` / ``known_mask`` ``(N,)``: tokens
    that are given (clean latents of conditioning frames): they are held fixed and seen by the
    model at t = 0 at every step. ``tied = (copies, originals)``: token indices ``(M,)`` each; the
    tokens ``copies`` are held equal to ``originals`` at every step and both move with the mean of
    their two velocities (a loop's last latent frame is its first again, seen at both ends).
    ``start`` + ``strength`` in (0, 1]: begin from ``start`` noised to the time ``strength`` of
    the way along the schedule (1 = from pure noise).
    ``callback(step, total)`` after each step, e.g. to advance a progress bar. Runs without gradients.
    """
    if method not in SAMPLERS:
        raise InvalidInputError(f"Unknown sampler {method!r}; choose one of {', '.join(SAMPLERS)}.")
    if not 0 < strength <= 1:
        raise InvalidInputError(f"Strength must be in (0, 1], got {strength}.")
    if guidance != 1 and uncond_velocity is None:
        raise InvalidInputError(f"Guidance {guidance} needs an unconditional model (uncond_velocity).")
    if (known is None) != (known_mask is None):
        raise InvalidInputError("Give both known and known_mask, or neither.")
    schedule = timesteps(steps, time_shift).to(noise.device)
    schedule = schedule[steps - max(1, round(steps * strength)) :]
    x = noise if start is None else torch.lerp(start, noise, schedule[0].to(noise.dtype))

    def impose(x: Tensor) -> Tensor:
        if known is not None:
            x = torch.where(known_mask[:, None], known, x)
        if tied is not None:
            x = x.index_copy(0, tied[0], x[tied[1]])
        return x

    def model(x: Tensor, t: Tensor) -> Tensor:
        t_tokens = torch.full((x.shape[0],), float(t), device=x.device)
        if known_mask is not None:
            t_tokens = t_tokens.masked_fill(known_mask, 0.0)
        v = velocity(x, t_tokens)
        if guidance != 1:
            v = guide(v, uncond_velocity(x, t_tokens), guidance, guidance_rescale, seq_lens)
        if tied is not None:
            shared = (v[tied[0]] + v[tied[1]]) / 2
            v = v.index_copy(0, tied[0], shared).index_copy(0, tied[1], shared)
        return v

    total = len(schedule) - 1
    for i in range(total):
        t, t_next = schedule[i], schedule[i + 1]
        x = impose(x)
        v = model(x, t)
        x_next = x + (t_next - t) * v
        if method == "heun" and t_next > 0:  # the last step stays first-order: the field at t = 0 is not needed
            x_next = x + (t_next - t) * (v + model(impose(x_next), t_next)) / 2
        x = x_next
        if callback is not None:
            callback(i + 1, total)
    return impose(x)
