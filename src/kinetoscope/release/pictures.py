"""The model card's pictures: loss curves (charts, drawn by :mod:`kinetoscope.plots`) and the sample sheet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The loss curve's size in pixels.
LOSS_SIZE = (480, 300)
LOSS_COLOUR = "#c81e1e"


def draw_loss_curve(run: dict[str, Any], path: Path) -> str:
    """The run's logged loss against step, as a PNG (log scale when it spans more than 20x); returns its file name."""
    from kinetoscope.plots import save

    return save(loss_figure(run), path)


def loss_figure(run: dict[str, Any]) -> Figure:
    """The chart :func:`draw_loss_curve` saves: loss against step, a point per logged row."""
    from kinetoscope.plots import figure, legend, scale_for

    points = [(int(r["step"]), float(r["loss"])) for r in run["rows"] if is_finite(r.get("loss"))]
    fig = figure(*LOSS_SIZE)
    ax = fig.add_subplot()
    ax.set_title(f"{run['label']}: training loss", fontsize="medium")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", alpha=0.3)
    if points:
        steps, values = zip(*points)
        log = scale_for(ax, values)
        ax.plot(steps, values, color=LOSS_COLOUR, marker="o", markersize=3, linewidth=1.5,
                label="loss (log scale)" if log else "loss")  # fmt: skip
        legend(ax, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no loss logged", transform=ax.transAxes, ha="center", va="center", color="0.4")
    return fig


def is_finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def sample_sheet(samples: list[tuple[str, np.ndarray]], cell: int = 128) -> Image.Image:
    """One row per prompt: its clip's first, middle and last frames."""
    rows = []
    for _, frames in samples:
        picks = [frames[0], frames[len(frames) // 2], frames[-1]]
        scale = cell / max(frames.shape[1:3])
        size = (max(1, round(frames.shape[2] * scale)), max(1, round(frames.shape[1] * scale)))
        rows.append([Image.fromarray(f).resize(size, Image.NEAREST) for f in picks])
    gap = 4
    width = max(sum(im.width for im in row) + gap * (len(row) + 1) for row in rows)
    height = sum(row[0].height + gap for row in rows) + gap
    sheet = Image.new("RGB", (width, height), (215, 215, 215))
    top = gap
    for row in rows:
        left = gap
        for im in row:
            sheet.paste(im, (left, top))
            left += im.width + gap
        top += row[0].height + gap
    return sheet
