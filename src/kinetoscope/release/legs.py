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
from typing import TYPE_CHECKING, Any

from kinetoscope.eval.adherence import COUNTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEGS = "legs.json"
#: (label, key, colour) of the curves on the legs plot; shares are 0-1 (left axis), the velocity
#: error in world units per second (right axis).
CURVES = (
    ("colour", "colour", "#c81e1e"),
    ("shape", "shape", "#1e78c8"),
    ("direction", "motion", "#28a03c"),
    ("uniform velocity error", "uniform_velocity", "#783ca0"),
)
#: The legs plot's size in pixels.
LEGS_SIZE = (560, 320)


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
        "adherence_counts": COUNTS,
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
        mark = "" if leg.get("adherence_counts") == COUNTS else "*"
        lines.append(
            f"| {leg['leg']}{mark} | {leg['date']} | {steps} | {leg['cpu_hours']:.2f} ({leg['cumulative_cpu_hours']:.2f}) "
            f"| {_share(f.get('colour'))} | {_share(f.get('shape'))} | {_share(f.get('motion'))} "
            f"| {'–' if error is None else f'{error:.3f}'} |"
        )
    if any(leg.get("adherence_counts") != COUNTS for leg in legs):
        lines += ["", f"\\* Scored by the earlier count claim, which counted colours: a named object drawn twice passed. Unmarked legs count {COUNTS}."]
    return lines


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def draw_legs(legs: list[dict[str, Any]], path: Path) -> str:
    """Adherence shares (left axis, 0-100%) and the uniform velocity error (right axis) against
    cumulative CPU-hours, as a PNG; returns its file name."""
    from kinetoscope.plots import save

    return save(legs_figure(legs), path)


def legs_figure(legs: list[dict[str, Any]]) -> Figure:
    """The chart :func:`draw_legs` saves: a point per leg on each curve that has a figure for it."""
    from matplotlib.ticker import PercentFormatter

    from kinetoscope.plots import figure, legend, scale_for

    fig = figure(*LEGS_SIZE)
    shares = fig.add_subplot()
    errors = shares.twinx()
    shares.set_title("per leg: prompt adherence and uniform velocity error", fontsize="medium")
    shares.set_xlabel("CPU-hours, all legs so far")
    shares.set_ylabel("share of objects shown")
    shares.yaxis.set_major_formatter(PercentFormatter(1.0))
    shares.set_ylim(-0.03, 1.03)
    shares.grid(True, alpha=0.3)
    errors.set_ylabel("velocity error (units/s)", color=CURVES[-1][2])
    errors.tick_params(axis="y", colors=CURVES[-1][2])
    for label, key, colour in CURVES:
        points = [(leg["cumulative_cpu_hours"], leg["figures"][key]) for leg in legs if leg["figures"].get(key) is not None]
        if not points:
            continue
        ax = errors if key == "uniform_velocity" else shares
        hours, values = zip(*points)
        if ax is errors and scale_for(errors, values):
            label += " (log scale)"
        ax.plot(hours, values, color=colour, marker="o", markersize=4, linewidth=1.5, label=label)
    last = max((leg["cumulative_cpu_hours"] for leg in legs), default=0.0)
    shares.set_xlim(0.0, last * 1.05 if last > 0 else 1.0)
    if errors.get_yscale() == "linear":
        errors.set_ylim(bottom=0.0)
    legend(shares, errors, below=True)
    return fig
