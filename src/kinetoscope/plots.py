"""Charts: every chart kinetoscope writes is a matplotlib figure made and saved here.

Figures are :class:`matplotlib.figure.Figure` objects on their own Agg canvas, never pyplot's
global state, so drawing a chart neither needs a display nor changes the backend a user chose.
A chart is sized in pixels and saved as a PNG of exactly that size; a curve whose positive values
span more than :data:`LOG_SPAN` times is drawn on a log scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Pixels per inch: a chart's size is given in pixels.
DPI = 100
#: A curve whose values span more than this ratio is drawn on a log scale.
LOG_SPAN = 20.0


def figure(width: int, height: int) -> Figure:
    """A blank ``width`` x ``height`` pixel figure on an Agg canvas, laid out so labels fit."""
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def spans_widely(values: Iterable[float]) -> bool:
    """Whether the values are all positive and the largest is more than :data:`LOG_SPAN` times the smallest."""
    values = [v for v in values if math.isfinite(v)]
    return bool(values) and min(values) > 0 and max(values) / min(values) > LOG_SPAN


def scale_for(axes: Axes, values: Iterable[float], axis: str = "y") -> bool:
    """Put ``axes``' ``axis`` on a log scale if ``values`` span widely; returns whether it did."""
    log = spans_widely(values)
    if log:
        (axes.set_yscale if axis == "y" else axes.set_xscale)("log")
    return log


def legend(*axes: Axes, below: bool = False, **options: Any) -> None:
    """One legend for the curves of several axes (a twin axis's curves included): on the first
    axes, or with ``below`` under them, outside the plot, where it hides no point."""
    pairs = [pair for ax in axes for pair in zip(*ax.get_legend_handles_labels())]
    if not pairs:
        return
    handles, labels = zip(*pairs)
    options = {"fontsize": "small", "framealpha": 0.9, **options}
    if below:
        axes[0].figure.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 4), **options)
    else:
        axes[0].legend(handles, labels, **options)


def save(fig: Figure, path: str | Path) -> str:
    """Write ``fig`` as a PNG of its exact pixel size (whatever the user's savefig settings); returns the file name."""
    path = Path(path)
    FigureCanvasAgg(fig).print_png(str(path))
    return path.name
