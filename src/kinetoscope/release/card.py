"""The model card, ``MODEL.md``: how the model was trained, its legs, its scores beside the
physical-law paper's (:func:`kinetoscope.eval.paper.paper_figures`), samples and the retrain commands."""

from __future__ import annotations

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


PICTURES = "pictures"


TRAINING = "training"


# ---------------------------------------------------------------- the model card
def model_card(
    options: BundleOptions,
    components: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    curves: dict[str, str],
    measured: dict[str, Any],
    configs: dict[str, Path],
    legs: list[dict[str, Any]],
) -> str:
    total = sum(c["bytes"] for c in components)
    lines = [
        "# models/world — the bundled reference model",
        "",
        f"**How this model was trained:** {options.note.strip()}",
        "",
        "## Components",
        "",
        "| component | parameters | stored as | size |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{c['name']}/` | {c['parameters'] / 1e6:.2f}M | {', '.join(c['dtypes'])} | {c['bytes'] / 1e6:.1f} MB |" for c in components
    ]
    lines += [
        f"| all | {sum(c['parameters'] for c in components) / 1e6:.2f}M | | {total / 1e6:.1f} MB (limit {options.max_mb:g} MB) |",
        "",
        "Weights are stored in half precision and loaded in float32 on the CPU "
        "(`Pipeline.from_pretrained(\"models/world\")`).",
    ]
    lines += _training_section(runs, curves)
    lines += [
        "",
        "## Training legs",
        "",
        "The model is trained in legs of a few CPU-hours, each continuing from the weights the last one committed "
        "(CPU-hours: training wall time times the threads it ran). Colour, shape and direction: share of the objects "
        "of the `objects` suite's prompts (\"a {colour} {shape} moves {direction}\") that the videos show.",
        "",
        *legs_table(legs),
        "",
        f"![legs]({PICTURES}/legs.png)",
    ]
    lines += _evaluation_section(options, measured)
    timing = measured["timing"]
    lines += [
        "",
        "## Samples",
        "",
        f"First, middle and last frames of {options.width}x{options.height}, {options.frames}-frame clips "
        f"(seed {options.seed}, 30 steps, guidance 5), one row per prompt:",
        "",
        f"![samples]({PICTURES}/samples.png)",
        "",
    ]
    lines += [f"{i + 1}. {prompt}" for i, (prompt, _) in enumerate(measured["samples"])]
    lines += [
        "",
        "## Generation time",
        "",
        "The main command, from the bundle, in a fresh process on the CPU (imports and loading included):",
        "",
        "```bash",
        timing["command"],
        "```",
        "",
        f"**{timing['seconds']:.1f} s** for {options.timing_seconds:g} s at {options.timing_width}x{options.timing_height} "
        f"on {timing['cpus']} CPU cores (torch {torch.__version__}); output: `samples/main_command.mp4`.",
    ]
    lines += _retrain_section(runs, configs, options)
    return "\n".join(lines) + "\n"


def _training_section(runs: list[dict[str, Any]], curves: dict[str, str]) -> list[str]:
    lines = ["", "## Data and training", ""]
    if not runs:
        return lines + ["No run directories were given, so data, steps and compute are not recorded here."]
    lines += [
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


def _evaluation_section(options: BundleOptions, measured: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Evaluation",
        "",
        f"{options.n} clips per suite, {options.width}x{options.height}, {options.frames} frames at {options.fps:g} fps, "
        f"seed {options.seed}; the physics, permanence and flicker suites give the model the first 3 frames. Metrics "
        "from `kinetoscope.eval` (the same as `kinetoscope eval world`); per-clip scores and pictures in "
        "[eval/report.md](eval/report.md). The floor is each metric on the world's own clips read back from mp4.",
        "",
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
    vae = measured["vae"]
    lines += [
        "",
        "A velocity of – means no clip had a ball the detector could follow (the pass rate counts those as failures). "
        "Conditioning fidelity is the PSNR of the output's given frames against the frames given (worst frame per "
        f"clip, capped at {PSNR_CAP:g} dB); adherence gives no frames.",
        "",
        f"**VAE PSNR:** {vae['psnr']:.2f} dB (SSIM {vae['ssim']:.4f}) over {vae['clips']} held-out world clips "
        f"of {vae['shape']} (frames x width x height), every in-distribution scenario. Object colour error "
        f"(pixels unlike the clip's median colour): "
        f"{'–' if vae['object_error'] is None else format(vae['object_error'], '.1f') + ' levels of 255'}.",
    ]
    return lines


def _mean(row: dict[str, Any]) -> str:
    return "–" if row["mean"] is None else f"{row['mean']:.4g} {row['unit']}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _retrain_section(runs: list[dict[str, Any]], configs: dict[str, Path], options: BundleOptions) -> list[str]:
    lines = [
        "",
        "## Retrain from nothing",
        "",
        "The recipe, in legs of a time budget on two CPU cores (each stage resumes if run again, and a later "
        "leg continues from the committed model): `scripts/train_world_model.sh`. The exact runs behind this "
        "bundle, from their resolved configs (shipped in `training/`):",
        "",
        "```bash",
    ]
    for run in runs:
        summary = run["summary"]
        extra = ""
        if summary and summary["stopped_by"] in ("time_limit", "signal"):
            # Same steps without the clock: the budget made the count depend on the machine.
            extra = f" --set steps={summary['steps_done']} --set time_limit_minutes=null"
        lines.append(f"kinetoscope train {run['name']} --config {options.out}/{TRAINING}/{configs[run['label']].name}{extra}")
    lines += [bundle_command(options), "```"]
    return lines
