"""Measuring what a piece of work costs, for benchmarks and the tests that hold memory bounds."""

from __future__ import annotations

from typing import Callable


def peak_allocated(fn: Callable[[], object]) -> int:
    """Peak bytes torch allocated on the CPU while ``fn`` ran, above what was live before.

    Read from the profiler's allocator events, so it counts tensors only (not the Python heap
    or the allocator's cached blocks) and does not depend on what else the process holds.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak
