"""Seeds derived from several parts, so every sample and every rank has its own independent stream."""

from __future__ import annotations

import numpy as np


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from ``parts`` (e.g. ``(seed, "sample", index)``); equal parts, equal seed."""
    words = [p if isinstance(p, int) else int.from_bytes(p.encode(), "little") % (1 << 63) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
