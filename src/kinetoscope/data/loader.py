"""Planned batches loaded in worker processes, with unreadable samples skipped and reported.

The main process plans batches (:func:`~kinetoscope.data.batching.plan_batches`); a torch
``DataLoader`` hands each plan to a worker, which loads its samples and collates them. Every
sample is a pure function of its global index, so workers change speed, never content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch

from kinetoscope.data.batching import BatchPlan, PlanState, plan_batches
from kinetoscope.errors import KinetoscopeError


class SampleSource(Protocol):
    """An endless, index-addressed set of samples (the world) or a finite one read in epochs (a manifest)."""

    def cost(self, index: int) -> int:
        """Work of sample ``index`` (tokens or pixels), known without loading it."""

    def load(self, index: int) -> Any:
        """The sample itself; raises a KinetoscopeError or OSError when it cannot be read."""

    def describe(self, index: int) -> str:
        """What to list when the sample is skipped (its file path, for a manifest)."""


@dataclasses.dataclass
class LoadedBatch:
    data: Any
    plan: BatchPlan
    #: (what, why) for every sample of the plan that could not be read.
    skipped: list[tuple[str, str]]
    num_samples: int


class _PlannedDataset(torch.utils.data.Dataset):
    def __init__(self, source: SampleSource, collate: Callable[[list[Any]], Any]):
        self.source = source
        self.collate = collate

    def __getitem__(self, plan: BatchPlan) -> LoadedBatch:
        samples, skipped = [], []
        for index in plan.keys:
            try:
                samples.append(self.source.load(index))
            except (KinetoscopeError, OSError) as e:  # a bad file is listed, never fatal
                skipped.append((self.source.describe(index), str(e)))
        data = self.collate(samples) if samples else None
        return LoadedBatch(data, plan, skipped, len(samples))


def _as_is(batch: LoadedBatch) -> LoadedBatch:
    return batch


def load_batches(
    source: SampleSource,
    collate: Callable[[list[Any]], Any],
    state: PlanState,
    *,
    budget: int | None,
    max_samples: int | None,
    lookahead: int,
    rank: int,
    world_size: int,
    num_workers: int = 0,
) -> Iterator[LoadedBatch]:
    """Batches from ``state`` on, forever; batches whose samples all failed come back with ``data=None``."""
    plans = plan_batches(
        source.cost,
        state,
        budget=budget,
        max_samples=max_samples,
        lookahead=lookahead,
        rank=rank,
        world_size=world_size,
    )
    loader = torch.utils.data.DataLoader(
        _PlannedDataset(source, collate),
        sampler=plans,
        batch_size=None,
        collate_fn=_as_is,
        num_workers=num_workers,
        # Its own generator: creating the iterator must not draw from the global RNG, whose
        # state a resumed run restores exactly.
        generator=torch.Generator().manual_seed(0),
        persistent_workers=False,
    )
    return iter(loader)
