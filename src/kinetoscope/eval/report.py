"""Write evaluation results: ``results.json``, a Markdown ``report.md`` and its PNG pictures.

The summary table shows the physical-law paper's figure (:mod:`kinetoscope.eval.paper`) beside
each physics suite. The pictures are images composited with PIL, not charts (charts are drawn by
:mod:`kinetoscope.plots`): for each suite's first clips, the true versus detected trajectories
over the clip's first frame, and a strip of frames with the ground truth's render under the
scored video.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from kinetoscope.eval.detect import Detection, match_objects
from kinetoscope.eval.metrics import THRESHOLDS, MetricResult, json_ready
from kinetoscope.eval.paper import paper_figure, paper_figures
from kinetoscope.eval.suites import SuiteResult
from kinetoscope.files import atomic_write_text
from kinetoscope.world import render_state
from kinetoscope.world.vocabulary import COLORS, VIEW_HEIGHT

#: Pictures are drawn this many times larger than the clip, so thin lines stay readable.
SCALE = 3
STRIP_FRAMES = 8
#: Frames narrower than this are enlarged in the strips, so the labels fit and the objects show.
STRIP_WIDTH = 96
_LABEL = (40, 40, 40)


def write_report(out: str | Path, results: list[SuiteResult], *, title: str, command: str) -> Path:
    """Write ``results.json``, ``report.md`` and ``pictures/*.png`` into ``out``; returns the report's path."""
    out = Path(out)
    pictures = out / "pictures"
    pictures.mkdir(parents=True, exist_ok=True)
    data = {"title": title, "command": command, "thresholds": THRESHOLDS, "suites": {r.suite.name: r.to_dict() for r in results}}
    atomic_write_text(out / "results.json", json.dumps(json_ready(data), indent=1, sort_keys=True) + "\n")
    paper = paper_figures()
    lines = [f"# {title}", "", f"`{command}`", ""]
    lines += [f"| suite | metric | mean | median | pass rate | clips | paper ({paper['cite']}) |", "|---|---|---|---|---|---|---|"]
    for result in results:
        for metric, row in result.summary().items():
            lines.append(
                f"| {result.suite.name} | {metric} | {_number(row['mean'])} {row['unit'] or ''} | {_number(row['median'])} "
                f"| {_percent(row['pass_rate'])} | {row['clips']} of {row['of']} | {_paper(result.suite.name, metric)} |"
            )
    lines += ["", "A metric passes a clip by the thresholds in `results.json` (a few times its floor on ground truth)."]
    if any(_paper(r.suite.name, "velocity") != "–" for r in results):
        lines += [
            "",
            f"The paper column is the velocity error (world units per second) that {paper['source']} reports for the "
            f"same scenario, measured at {paper['setting']}: compare at that setting.",
        ]
    for result in results:
        lines += _suite_section(result, pictures)
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _suite_section(result: SuiteResult, pictures: Path) -> list[str]:
    suite = result.suite
    given = f" The generator was given the first {suite.given} frames." if suite.given else ""
    lines = ["", f"## {suite.name}", "", f"{suite.description[:1].upper()}{suite.description[1:]}.{given}", ""]
    lines += ["| clip | " + " | ".join(suite.metrics) + " |", "|---" * (len(suite.metrics) + 1) + "|"]
    for clip in result.clips:
        cells = [_cell(clip.metrics.get(name)) for name in suite.metrics]
        lines.append(f"| {clip.name} | " + " | ".join(cells) + " |")
    for index, clip in enumerate(c for c in result.clips if c.frames is not None):
        stem = f"{suite.name}_{index}"
        lines += ["", f"### {clip.name}", "", f"> {clip.prompt}", ""]
        draw_trajectories(clip.frames, clip.detections or [], clip.state).save(pictures / f"{stem}_trajectories.png")
        draw_strip(clip.frames, clip.state).save(pictures / f"{stem}_frames.png")
        lines += [
            f"![true and detected trajectories of {clip.name}](pictures/{stem}_trajectories.png)",
            "",
            f"![frames of {clip.name}](pictures/{stem}_frames.png)",
        ]
        failed = [_failure(name, r) for name, r in clip.metrics.items() if r.passed is False]
        if failed:
            lines += ["", "Failed: " + "; ".join(failed) + "."]
    return lines


def _paper(suite: str, metric: str) -> str:
    """The paper's figure beside a physics suite's velocity row; – elsewhere."""
    figure = paper_figure(suite) if metric == "velocity" else None
    return figure or "–"


def _failure(name: str, result: MetricResult) -> str:
    """What failed, in a few words: the claims not seen, or the value against its threshold."""
    claims = [c["claim"] for c in result.details.get("claims", []) if not c["passed"]]
    if claims:
        return f"{name}: not seen: " + ", ".join(claims)
    value = "no value" if result.value is None else f"{result.value:.4g} {result.unit}"
    return f"{name} {value} (threshold {THRESHOLDS[name]:g}) over {result.over}"


def _cell(result: Any) -> str:
    if result is None or result.value is None:
        return "–"
    mark = "" if result.passed is None else (" ✓" if result.passed else " ✗")
    return f"{_number(result.value)}{mark}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


# ---------------------------------------------------------------- pictures
def draw_trajectories(frames: np.ndarray, detections: list[list[Detection]], state: dict[str, Any] | None) -> Image.Image:
    """The first frame, faded, with each object's true path (thin dark line) and detected centres (dots in its colour)."""
    height, width = frames.shape[1:3]
    faded = (255 - (255 - frames[0].astype(np.float32)) * 0.35).astype(np.uint8)
    image = Image.fromarray(faded).resize((width * SCALE, height * SCALE), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    if state is not None:
        matches = match_objects(detections, state)
        for i, obj in enumerate(state["objects"]):
            draw.line([_to_pixel(p, state, t) for t, p in enumerate(obj["position"])], fill=_LABEL, width=1)
            for detection in (row[i] for row in matches):
                if detection is not None:
                    _dot(draw, detection.center, COLORS[obj["color"]])
    else:
        for detection in (d for found in detections for d in found):
            _dot(draw, detection.center, COLORS[detection.color])
    draw.text((4, 2), "line: ground truth   dots: detected", fill=_LABEL)
    return image


def draw_strip(frames: np.ndarray, state: dict[str, Any] | None) -> Image.Image:
    """Evenly spaced frames in a row, under a line naming them; the ground truth's render in a
    second row when there is a state. Small frames are enlarged to at least ``STRIP_WIDTH`` pixels."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int))
    rows = [("scored", frames[picks])]
    if state is not None:
        rows.append(("ground truth", render_state(state)[picks]))
    height, width = frames.shape[1:3]
    zoom = max(1, -(-STRIP_WIDTH // width))
    cell_w, cell_h, label = width * zoom + 2, height * zoom, 14
    strip = Image.new("RGB", (len(picks) * cell_w, len(rows) * (cell_h + label)), (215, 215, 215))  # gaps show between white frames
    draw = ImageDraw.Draw(strip)
    for r, (name, images) in enumerate(rows):
        top = r * (cell_h + label)
        draw.text((2, top + 1), f"{name}, frames {', '.join(str(i) for i in picks)}", fill=_LABEL)
        for k, frame in enumerate(images):
            strip.paste(Image.fromarray(frame).resize((width * zoom, cell_h), Image.NEAREST), (k * cell_w, top + label))
    return strip


def _to_pixel(position: list[float], state: dict[str, Any], frame: int) -> tuple[float, float]:
    ppu = state["height"] / VIEW_HEIGHT
    cam_x, cam_y = state["camera"]["offset"][frame]
    return (position[0] - cam_x) * ppu * SCALE, (state["height"] - (position[1] - cam_y) * ppu) * SCALE


def _dot(draw: ImageDraw.ImageDraw, center: tuple[float, float], rgb: tuple[int, int, int]) -> None:
    x, y = center[0] * SCALE, center[1] * SCALE
    draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=tuple(rgb), outline=_LABEL)
