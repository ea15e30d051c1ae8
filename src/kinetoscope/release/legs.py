"""Training legs of a bundled model: each bundle appends one, so the model card shows the whole curve.

The bundled model is trained in legs of a few CPU-hours, each continuing from the last one's
committed weights. ``legs.json`` in the model directory lists them (date, note, steps and
CPU-hours per task, the step each run directory was counted to, and the figures the bundle
measured); :func:`append_leg` carries the list from the previous bundle into the new one, and
:func:`draw_legs` plots the figures against cumulative CPU-hours.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

LEGS = "legs.json"
#: (label, key, colour) of the curves on the legs plot; shares are 0-1, the velocity error in units/s.
CURVES = (
    ("colour", "colour", (200, 30, 30)),
    ("shape", "shape", (30, 120, 200)),
    ("direction", "motion", (40, 160, 60)),
    ("uniform velocity error", "uniform_velocity", (120, 60, 160)),
)


def read_legs(model_dir: Path) -> list[dict[str, Any]]:
    path = Path(model_dir) / LEGS
    return json.loads(path.read_text()) if path.is_file() else []


def append_leg(previous: list[dict[str, Any]], runs: list[dict[str, Any]], figures: dict[str, float | None], note: str) -> list[dict[str, Any]]:
    """The previous legs plus this one: the steps and CPU-hours its runs added since the last legs
    counted them (per task kind), and the bundle's figures."""
    leg_runs: dict[str, dict[str, float]] = {}
    counted = []
    for run in runs:
        share = _new_share(run, _last_count(previous, str(run["dir"])))
        if share is None:  # trained in an earlier leg and not since: already counted
            continue
        steps, seconds, mark = share
        counted.append(mark)
        total = leg_runs.setdefault(run["name"], {"steps": 0, "cpu_hours": 0.0})
        total["steps"] += steps
        total["cpu_hours"] += seconds / 3600.0
    spent = sum(r["cpu_hours"] for r in leg_runs.values())
    total_hours = (previous[-1]["cumulative_cpu_hours"] if previous else 0.0) + spent
    leg = {
        "leg": len(previous) + 1,
        "date": datetime.date.today().isoformat(),
        "note": note,
        "runs": leg_runs,
        "counted": counted,
        "cpu_hours": spent,
        "cumulative_cpu_hours": total_hours,
        "figures": figures,
    }
    return [*previous, leg]


def _last_count(legs: list[dict[str, Any]], run_dir: str) -> dict[str, Any] | None:
    """Where the legs last counted a run directory: its step, train_seconds and cpu_seconds then."""
    marks = [m for leg in legs for m in leg.get("counted", []) if m["dir"] == run_dir]
    return marks[-1] if marks else None


def _new_share(run: dict[str, Any], seen: dict[str, Any] | None) -> tuple[int, float, dict[str, Any]] | None:
    """The steps and core-seconds a run added since ``seen``, and the mark to count it to now."""
    summary = run["summary"]
    if summary:
        step, train_seconds = int(summary["steps_done"]), float(summary["train_seconds"])
        cpu = summary.get("cpu_seconds")
        one_invocation = seen is not None and summary.get("started_at_step") == seen["step"]
        if cpu is None or one_invocation:
            # One invocation since the last count (exact: its time at its threads), or a run from
            # before the trainer kept cpu_seconds, whose resumed total may count old time at today's threads.
            added_cpu = (train_seconds - (seen or {}).get("train_seconds", 0.0)) * int(summary.get("threads") or 1)
        else:
            added_cpu = float(cpu) - (seen or {}).get("cpu_seconds", 0.0)
    else:  # no summary (a run stopped by hand): the logged steps, time unknown
        step, train_seconds, added_cpu = (int(run["rows"][-1]["step"]) if run["rows"] else 0), 0.0, 0.0
    if seen is not None and step <= seen["step"]:
        return None
    mark = {
        "dir": str(run["dir"]),
        "step": step,
        "train_seconds": train_seconds,
        "cpu_seconds": (seen or {}).get("cpu_seconds", 0.0) + added_cpu,
    }
    return step - (seen["step"] if seen else 0), added_cpu, mark


def legs_table(legs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| leg | date | steps this leg | CPU-hours (total) | colour | shape | direction | uniform velocity error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for leg in legs:
        f = leg["figures"]
        error = f.get("uniform_velocity")
        steps = ", ".join(f"{name} {run['steps']}" for name, run in leg["runs"].items())
        lines.append(
            f"| {leg['leg']} | {leg['date']} | {steps} | {leg['cpu_hours']:.2f} ({leg['cumulative_cpu_hours']:.2f}) "
            f"| {_share(f.get('colour'))} | {_share(f.get('shape'))} | {_share(f.get('motion'))} "
            f"| {'–' if error is None else f'{error:.3f}'} |"
        )
    return lines


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def draw_legs(legs: list[dict[str, Any]], path: Path) -> str:
    """Adherence shares (left axis, 0-100%) and the uniform velocity error (right axis) against cumulative CPU-hours."""
    width, height, margin = 560, 320, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 8), "per leg: adherence (0-100%) and uniform velocity error against CPU-hours", fill="black")
    box = (margin, 28, width - margin, height - 60)
    draw.rectangle(box, outline=(120, 120, 120))
    hours = [leg["cumulative_cpu_hours"] for leg in legs]
    x1 = max(max(hours, default=1.0), 1e-6) * 1.05
    errors = [leg["figures"].get("uniform_velocity") for leg in legs]
    top_error = max([e for e in errors if e is not None] or [1.0]) * 1.1

    def point(h: float, value: float, scale: float) -> tuple[float, float]:
        return box[0] + h / x1 * (box[2] - box[0]), box[3] - min(value / scale, 1.0) * (box[3] - box[1])

    for i, (label, key, colour) in enumerate(CURVES):
        scale = top_error if key == "uniform_velocity" else 1.0
        xy = [point(h, leg["figures"][key], scale) for h, leg in zip(hours, legs) if leg["figures"].get(key) is not None]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.text((margin + 130 * i, height - 22), label, fill=colour)
    draw.text((4, box[1]), "100%", fill="black")
    draw.text((4, box[3] - 10), "0%", fill="black")
    draw.text((box[2] + 4, box[1]), f"{top_error:.2g}", fill=CURVES[-1][2])
    draw.text((box[0], box[3] + 5), "0 CPU-h", fill="black")
    draw.text((box[2] - 60, box[3] + 5), f"{x1:.2f} CPU-h", fill="black")
    image.save(path)
    return path.name
