"""Native-size batching: group samples by a work budget (tokens or pixels), not by a sample count.

A rank reads its own share of an endless sample stream: its position ``k`` is the global
sample ``k * world_size + rank``. Batches are planned from each sample's cost alone (known
before loading: drawn sizes for the world, manifest metadata for files), so the whole plan is
a pure function of the stream and a small :class:`PlanState` (the next position and the
samples looked at but not yet used). Saving that state in a checkpoint and planning again from
it reproduces the same batches, whatever loader workers had prefetched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class PlanState:
    """Where a rank's stream stands: its next unread position and the positions waiting in the window."""

    next: int = 0
    pending: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"next": self.next, "pending": list(self.pending)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanState:
        return cls(int(data["next"]), tuple(int(p) for p in data["pending"]))


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """One micro-batch: the global sample indices to load, their summed cost, and the state after it."""

    keys: tuple[int, ...]
    cost: int
    after: PlanState


def global_index(position: int, rank: int, world_size: int) -> int:
    """The global sample a rank reads at its ``position`` (ranks interleave, so none reads another's)."""
    return position * world_size + rank


def plan_batches(
    cost: Callable[[int], int],
    state: PlanState = PlanState(),
    *,
    budget: int | None = None,
    max_samples: int | None = None,
    lookahead: int = 1,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[BatchPlan]:
    """Yield batches forever: first fit over a window of ``lookahead`` upcoming samples.

    The oldest waiting sample always goes first (nothing starves, and a sample above the
    budget runs alone); later ones join while the summed ``cost`` stays within ``budget``
    and the count within ``max_samples``. With no budget this is plain fixed-size batching.
    """
    if budget is None and max_samples is None:
        raise ValueError("plan_batches needs a budget, a max_samples, or both")
    limit = math.inf if budget is None else budget
    count = max_samples or math.inf
    window = max(lookahead, 1) if budget is not None else int(count)
    nxt, pending = state.next, list(state.pending)
    costs: dict[int, int] = {}

    def cost_at(position: int) -> int:
        if position not in costs:
            costs[position] = cost(global_index(position, rank, world_size))
        return costs[position]

    while True:
        while len(pending) < window:
            pending.append(nxt)
            nxt += 1
        chosen: list[int] = []
        used = 0
        for position in pending:
            c = cost_at(position)
            if not chosen or used + c <= limit:
                chosen.append(position)
                used += c
            if len(chosen) >= count or used >= limit:
                break
        pending = [p for p in pending if p not in chosen]
        for p in chosen:
            costs.pop(p, None)
        keys = tuple(global_index(p, rank, world_size) for p in chosen)
        yield BatchPlan(keys, used, PlanState(nxt, tuple(pending)))


def latent_tokens(
    frames: int, height: int, width: int, *, spatial: int, temporal: int, patch: tuple[int, int, int]
) -> int:
    """Transformer tokens of a clip: latent ``t*h*w`` over the patch volume (frame 0 is its own latent frame)."""
    pt, ph, pw = patch
    t = 1 + (frames - 1) // temporal
    return math.ceil(t / pt) * (height // spatial // ph) * (width // spatial // pw)


def pixel_count(frames: int, height: int, width: int) -> int:
    """The VAE's work measure for a clip: its number of pixels over all frames."""
    return frames * height * width
