"""The model card, ``MODEL.md``: how the model was trained, its legs, its scores beside the
physical-law paper's (:func:`kinetoscope.eval.paper.paper_figures`), samples and the retrain commands.

The prose and layout are the template ``MODEL.md.template`` (package data, ``string.Template``);
this module computes the tables and values that fill it.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from kinetoscope.eval.metrics import PSNR_CAP
from kinetoscope.eval.paper import paper_figure, paper_figures
from kinetoscope.release.legs import legs_table
from kinetoscope.release.measure import SUITES
from kinetoscope.release.options import BundleOptions, bundle_command
from kinetoscope.release.pictures import is_finite
from kinetoscope.release.runs import wall_seconds


MODEL_CARD = "MODEL.md"
#: The card's prose and layout, ``$name`` placeholders for what :func:`model_card` computes.
TEMPLATE = "MODEL.md.template"


PICTURES = "pictures"


TRAINING = "training"


# ---------------------------------------------------------------- the model card
def template() -> string.Template:
    return string.Template(resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8"))


def model_card(
    options: BundleOptions,
    components: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    curves: dict[str, str],
    measured: dict[str, Any],
    configs: dict[str, Path],
    legs: list[dict[str, Any]],
    *,
    guidance: float,
    sample_shift: float,
) -> str:
    """``MODEL.md``: the template filled in; every placeholder must have a value (a missing one raises KeyError)."""
    from kinetoscope.pipeline.request import DEFAULT_STEPS

    vae, timing = measured["vae"], measured["timing"]
    values = {
        "note": options.note.strip(),
        "components": "\n".join(_components_table(components, options)),
        "training": "\n".join(_training_section(runs, curves)),
        "legs": "\n".join(legs_table(legs)),
        "pictures": PICTURES,
        "n": options.n,
        "width": options.width,
        "height": options.height,
        "frames": options.frames,
        "fps": f"{options.fps:g}",
        "seed": options.seed,
        "evaluation": "\n".join(_evaluation_table(measured)),
        "psnr_cap": f"{PSNR_CAP:g}",
        "vae_psnr": f"{vae['psnr']:.2f}",
        "vae_ssim": f"{vae['ssim']:.4f}",
        "vae_clips": vae["clips"],
        "vae_shape": vae["shape"],
        "vae_object_error": "–" if vae["object_error"] is None else f"{vae['object_error']:.1f} levels of 255",
        "vae_ceiling": ", ".join(f"{kind} {_rate(share)}" for kind, share in vae["objects"].items()),
        "steps": DEFAULT_STEPS,
        "guidance": f"{guidance:g}",
        "sample_shift": f"{sample_shift:g}",
        "prompts": "\n".join(f"{i + 1}. {prompt}" for i, (prompt, _) in enumerate(measured["samples"])),
        "timing_command": timing["command"],
        "timing_seconds": f"{timing['seconds']:.1f}",
        "timing_length": f"{options.timing_seconds:g}",
        "timing_width": options.timing_width,
        "timing_height": options.timing_height,
        "cpus": timing["cpus"],
        "torch": torch.__version__,
        "retrain": "\n".join(_retrain_commands(runs, configs, options)),
    }
    return template().substitute(values)


def _components_table(components: list[dict[str, Any]], options: BundleOptions) -> list[str]:
    total = sum(c["bytes"] for c in components)
    lines = ["| component | parameters | stored as | size |", "|---|---|---|---|"]
    lines += [
        f"| `{c['name']}/` | {c['parameters'] / 1e6:.2f}M | {', '.join(c['dtypes'])} | {c['bytes'] / 1e6:.1f} MB |" for c in components
    ]
    lines.append(
        f"| all | {sum(c['parameters'] for c in components) / 1e6:.2f}M | | {total / 1e6:.1f} MB (limit {options.max_mb:g} MB) |"
    )
    return lines


def _training_section(runs: list[dict[str, Any]], curves: dict[str, str]) -> list[str]:
    if not runs:
        return ["No run directories were given, so data, steps and compute are not recorded here."]
    lines = [
        "| run | data | steps | stopped by | device | wall time | last loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cfg, summary = run["config"], run["summary"]
        steps_done = summary["steps_done"] if summary else (int(run["rows"][-1]["step"]) if run["rows"] else 0)
        stopped = "–"
        if summary:
            stopped = {"time_limit": "time limit", "signal": "asked to stop"}.get(summary["stopped_by"], "all steps")
            if summary["time_limit_minutes"]:
                stopped += f" ({summary['time_limit_minutes']:g} min budget)"
        seconds, how = wall_seconds(run)
        wall = "–" if seconds is None else f"{_duration(seconds)} ({how})"
        last = next((float(r["loss"]) for r in reversed(run["rows"]) if is_finite(r.get("loss"))), None)
        lines.append(
            f"| {run['name']} (`{run['dir']}`) | {_data_text(cfg['data'])} | {steps_done} of {cfg['steps']} | {stopped} "
            f"| {summary['device'] if summary else 'not recorded'} | {wall} | {'–' if last is None else f'{last:.4g}'} |"
        )
    lines.append("")
    lines += [f"![{name} loss]({PICTURES}/{file})" for name, file in curves.items()]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _data_text(data: dict[str, Any]) -> str:
    if data["source"] != "world":
        return f"{data['source']} {data.get('manifest') or ''}".strip()
    world = data["world"]
    sizes = ", ".join(f"{w}x{h}" for w, h in world["sizes"])
    frames = ", ".join(str(f) for f in world["frames"])
    return f"world: {', '.join(world['scenarios'])}; sizes {sizes}; frames {frames} at {world['fps']:g} fps"


def _evaluation_table(measured: dict[str, Any]) -> list[str]:
    lines = [
        "| suite | metric | this model (mean) | pass rate | clips | conditioning fidelity | floor "
        f"| paper ({paper_figures()['cite']}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    floors = measured["floors"]
    for name in SUITES:
        summary = measured[name].summary()
        conditioning = summary.pop("conditioning", None)
        ((metric, row),) = summary.items()  # each suite has one metric besides conditioning
        floor = floors[name].summary()[metric]["mean"] if name in floors else None
        lines.append(
            f"| {name} | {metric} | {_mean(row)} | {_rate(row['pass_rate'])} | {row['clips']} of {row['of']} "
            f"| {'–' if conditioning is None else _mean(conditioning)} | {'–' if floor is None else f'{floor:.4g}'} "
            f"| {paper_figure(name) or '–'} |"
        )
    return lines


def _mean(row: dict[str, Any]) -> str:
    return "–" if row["mean"] is None else f"{row['mean']:.4g} {row['unit']}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _retrain_commands(runs: list[dict[str, Any]], configs: dict[str, Path], options: BundleOptions) -> list[str]:
    lines = []
    for run in runs:
        summary = run["summary"]
        extra = ""
        if summary and summary["stopped_by"] in ("time_limit", "signal"):
            # Same steps without the clock: the budget made the count depend on the machine.
            extra = f" --set steps={summary['steps_done']} --set time_limit_minutes=null"
        lines.append(f"kinetoscope train {run['name']} --config {options.out}/{TRAINING}/{configs[run['label']].name}{extra}")
    return [*lines, bundle_command(options)]
