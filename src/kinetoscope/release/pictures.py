"""The model card's pictures: loss curves and the sample sheet."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw



def draw_loss_curve(run: dict[str, Any], path: Path) -> str:
    """The run's logged loss against step, as a PNG (log scale when it spans more than 20x); returns its file name."""
    points = [(int(r["step"]), float(r["loss"])) for r in run["rows"] if is_finite(r.get("loss"))]
    width, height, margin = 480, 300, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 10), f"{run['label']}: training loss", fill="black")
    box = (margin, 30, width - 15, height - 35)
    draw.rectangle(box, outline=(120, 120, 120))
    if points:
        steps = [s for s, _ in points]
        values = [v for _, v in points]
        positive = min(values) > 0
        log = positive and max(values) / min(values) > 20
        ys = [math.log10(v) for v in values] if log else values
        x0, x1 = min(steps), max(max(steps), min(steps) + 1)
        y0, y1 = min(ys), max(max(ys), min(ys) + 1e-9)
        xy = [
            (box[0] + (s - x0) / (x1 - x0) * (box[2] - box[0]), box[3] - (y - y0) / (y1 - y0) * (box[3] - box[1]))
            for s, y in zip(steps, ys)
        ]
        if len(xy) > 1:
            draw.line(xy, fill=(200, 30, 30), width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(200, 30, 30))
        label = (lambda y: f"{10 ** y:.3g}") if log else (lambda y: f"{y:.3g}")
        draw.text((4, box[1]), label(y1), fill="black")
        draw.text((4, box[3] - 10), label(y0), fill="black")
        draw.text((box[0], box[3] + 5), f"step {x0}", fill="black")
        draw.text((box[2] - 70, box[3] + 5), f"step {max(steps)}", fill="black")
        if log:
            draw.text((width - 120, 10), "log scale", fill=(90, 90, 90))
    image.save(path)
    return path.name


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
