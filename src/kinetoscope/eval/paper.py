"""The physical-law paper's figures, for reports to print beside the suites that measure the same.

``paper_figures.json`` (package data beside this module) holds the velocity error in world units
per second that Kang et al. (2024) report per physics scenario, in and out of distribution, and
the setting they measured it in. The evaluation report and the model card both read it here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

FILE = "paper_figures.json"


@functools.cache
def paper_figures() -> dict[str, Any]:
    """``source`` (the paper), ``cite`` (it in a few words, for a column's heading), ``setting``
    (size, frames, frame rate, frames given) and ``velocity_error``: suite name -> the paper's
    figure, as text. Shared: read, do not change."""
    return json.loads(resources.files(__package__).joinpath(FILE).read_text(encoding="utf-8"))


def paper_figure(suite: str) -> str | None:
    """The paper's velocity error for ``suite`` as it reports it, or None if it reports none."""
    return paper_figures()["velocity_error"].get(suite)
