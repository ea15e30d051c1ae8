"""Ship a trained model: ``models/world/`` in half precision, evaluated, with its model card.

:func:`bundle` copies a transformer export (``vae/``, ``dit/``, ``text/``, ``model_index.json``)
and optionally a captioner into the output directory with every float tensor cast to fp16 (or
bf16), refuses if the result is over the size limit, checks that the pipeline loads it, then
measures it with :mod:`kinetoscope.eval` (the suites ``kinetoscope eval world`` runs) and
:mod:`kinetoscope.vae.evaluate` (VAE PSNR), times the README's main command in a fresh process
on the CPU, and writes ``MODEL.md`` with the training runs' data, steps, compute and loss
curves, a sample sheet, the scores next to the physical-law paper's, and the retrain commands.
Everything is written into a temporary sibling directory that replaces ``out`` only when all
of it succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from kinetoscope.errors import CheckpointError, ConfigError, InvalidInputError
from kinetoscope.eval.metrics import PSNR_CAP
from kinetoscope.files import atomic_directory, atomic_write_json, atomic_write_text
from kinetoscope.legs import LEGS, append_leg, draw_legs, legs_table, read_legs
from kinetoscope.model_dir import read_index, stamp_model_id

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: The suites of the model card: the paper's three physics scenarios in and out of distribution,
#: then prompt adherence, object permanence and flicker. Conditioning fidelity (PSNR of the
#: given frames in the output) is measured by every suite that gives frames.
SUITES = (
    "uniform", "uniform-ood", "collision", "collision-ood", "parabola", "parabola-ood",
    "adherence", "objects", "permanence", "flicker",
)  # fmt: skip
PHYSICS = ("uniform", "uniform-ood", "collision", "collision-ood", "parabola", "parabola-ood")
#: Velocity error in world units per second reported by Kang et al. (2024), "How Far is Video
#: Generation from World Model: A Physical Law Perspective"
#: (128x128 balls on white, 32 frames at 10 fps, first 3 frames given).
PAPER_FIGURES = {
    "uniform": "0.022 (DiT-S, 30K videos); 0.012 (DiT-L, 3M videos); parse floor 0.010",
    "collision": "parse floor 0.012",
    "parabola": "parse floor 0.021",
    "uniform-ood": "about 0.43",
    "collision-ood": "about 0.43",
    "parabola-ood": "about 0.43",
}
#: The README's main command, timed from the bundle on the CPU.
MAIN_PROMPT = "A large red ball moves right at a moderate speed on a plain white background. The camera is static."
SAMPLE_PROMPTS = (
    MAIN_PROMPT,
    "A small blue ball bounces on a checkered floor. The camera is static.",
    "A red square passes behind a grey bar and comes out on the other side. The camera is static.",
)
MODEL_CARD = "MODEL.md"
PICTURES = "pictures"
TRAINING = "training"


@dataclasses.dataclass
class BundleOptions:
    """What ``kinetoscope bundle`` was asked (see its ``--help``)."""

    model: Path
    out: Path = Path("models/world")
    captioner: Path | None = None
    #: A VAE to ship instead of the model's own: one whose decoder alone trained on (same encoder).
    vae: Path | None = None
    runs: tuple[Path, ...] = ()
    dtype: str = "fp16"
    max_mb: float = 150.0
    n: int = 10
    width: int = 128
    height: int = 128
    frames: int = 32
    fps: float = 10.0
    seed: int = 0
    device: str = "cpu"
    note: str = ""
    timing_width: int = 128
    timing_height: int = 128
    timing_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.", param="dtype")
        if not self.note.strip():
            raise InvalidInputError("Say how the model was trained with --note (it goes into MODEL.md).", param="note")
        if self.n < 1:
            raise InvalidInputError(f"--n must be at least 1, got {self.n}.", param="n")
        from kinetoscope.devices import resolve_device

        self.device = str(resolve_device(self.device))


def bundle(options: BundleOptions) -> Path:
    """Build ``options.out`` (weights, evaluation, ``MODEL.md``); returns the model card's path."""
    from kinetoscope.progress import ProgressBar

    runs = [read_run(r) for r in (options.runs or infer_runs(options.model, options.captioner, options.vae))]
    kinds = [run["name"] for run in runs]
    for run in runs:  # two runs of a kind (a VAE and its decoder leg) go by their directories' names
        run["label"] = run["name"] if kinds.count(run["name"]) == 1 else Path(run["dir"]).name
    with atomic_directory(options.out) as stage:
        components = copy_weights(options, stage)
        pipeline_check(stage)
        steps = [*SUITES, "floors", "vae", "samples", "timing"]
        measured: dict[str, Any] = {}
        with ProgressBar(len(steps), "bundle", unit="step") as bar:
            generator = _pipeline_generator(stage, options.device)
            for step in steps:
                measured[step] = _measure(step, stage, options, generator)
                bar.advance(1, step=step)
        pictures = stage / PICTURES
        pictures.mkdir(exist_ok=True)
        curves = {run["label"]: draw_loss_curve(run, pictures / f"loss_{run['label']}.png") for run in runs}
        sample_sheet(measured["samples"]).save(pictures / "samples.png")
        configs = copy_run_configs(runs, stage / TRAINING)
        _write_eval_report(stage / "eval", [measured[s] for s in SUITES], options)
        legs = append_leg(read_legs(options.out), runs, leg_figures(measured), options.note)
        atomic_write_json(stage / LEGS, legs)
        draw_legs(legs, pictures / "legs.png")
        card = model_card(options, components, runs, curves, measured, configs, legs)
        atomic_write_text(stage / MODEL_CARD, card)
    return options.out / MODEL_CARD


# ---------------------------------------------------------------- weights
def copy_weights(options: BundleOptions, stage: Path) -> list[dict[str, Any]]:
    """Copy the model (and captioner) into ``stage`` in half precision; refuse if over the size limit."""
    index = read_index(options.model)
    if index.get("text_encoder_path"):
        raise ConfigError(
            f"{options.model} uses an external text encoder ({index['text_encoder_path']}); a bundle must be "
            "self-contained, so bundle a model trained with the built-in text encoder.",
            param="model",
        )
    dtype = DTYPES[options.dtype]
    copy_tree(options.model, stage, dtype)
    if options.vae is not None:
        replace_vae(stage / "vae", options.vae, dtype)
    if options.captioner is not None:
        from kinetoscope.language.captioner import Captioner

        Captioner.from_pretrained(options.captioner)  # refuse anything that is not a captioner
        copy_tree(options.captioner, stage / "captioner", dtype)
    limit = options.max_mb * 1e6
    total = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    if total > limit:
        raise ConfigError(
            f"The bundle would take {total / 1e6:.1f} MB, over the {options.max_mb:g} MB limit; train a smaller "
            "model or raise --max-mb.",
            param="max_mb",
        )
    stamp_model_id(stage, options.out.name)  # the bundle's own name and its (half-precision) weights
    return [_component(d) for d in sorted(stage.iterdir()) if (d / "model.safetensors").is_file()]


def replace_vae(shipped: Path, vae: Path, dtype: torch.dtype) -> None:
    """Ship ``vae`` in place of the model's VAE, if its encoder is the one the transformer learnt
    (the latents are the same; only the pictures decoded from them change)."""
    from kinetoscope.data.latents import vae_digest

    if not (vae / "model.safetensors").is_file():
        raise CheckpointError(f"--vae {vae} is not a saved VAE (model.safetensors is missing).", param="vae")
    if vae_digest(vae) != vae_digest(shipped):
        raise ConfigError(
            f"--vae {vae} has another encoder than the model's VAE, so the transformer's latents mean nothing "
            "to it; pass a VAE trained on from the model's with task.train_encoder: false.",
            param="vae",
        )
    shutil.rmtree(shipped)
    copy_tree(vae, shipped, dtype)


def copy_tree(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """Copy a directory, writing every ``*.safetensors`` with its float tensors cast to ``dtype``."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".safetensors":
            target.parent.mkdir(parents=True, exist_ok=True)
            cast_safetensors(path, target, dtype)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def cast_safetensors(src: Path, dst: Path, dtype: torch.dtype) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        cast = tensor.to(dtype)
        if bool(torch.isfinite(tensor).all()) and not bool(torch.isfinite(cast).all()):
            raise ConfigError(f"{src}: tensor {name} does not fit in {dtype} (it overflows); bundle with --dtype bf16.")
        tensors[name] = cast.contiguous()
    save_file(tensors, str(dst), metadata=metadata)


def _component(directory: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        shapes = [f.get_slice(name).get_shape() for name in f.keys()]
        dtypes = sorted({str(f.get_slice(name).get_dtype()) for name in f.keys()})
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {"name": directory.name, "parameters": sum(math.prod(s) for s in shapes), "dtypes": dtypes, "bytes": size}


def pipeline_check(model_dir: Path) -> None:
    """The bundle loads as a pipeline whose weights are fp32 (half-precision files, full-precision CPU maths)."""
    from kinetoscope.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model_dir)
    for name, module in (("vae", pipe.vae), ("dit", pipe.dit), ("text", pipe.text_encoder)):
        wrong = {str(p.dtype) for p in module.parameters() if p.dtype != torch.float32}
        if wrong:
            raise CheckpointError(f"The bundled {name} loaded with {', '.join(sorted(wrong))} weights, not float32.")


# ---------------------------------------------------------------- measurements
def _pipeline_generator(model_dir: Path, device: str):
    from kinetoscope.eval.suites import pipeline_generator

    return pipeline_generator(model_dir, device=device)


def _measure(step: str, stage: Path, options: BundleOptions, generator) -> Any:
    from kinetoscope.eval import run_suite, world_oracle

    size = {"width": options.width, "height": options.height, "frames": options.frames, "fps": options.fps}
    if step in SUITES:
        return run_suite(step, generator, n=options.n, seed=options.seed, **size)
    if step == "floors":  # the metric's floor: the world's own clips through mp4, as the paper's parse floor
        oracle = world_oracle(through_mp4=True)
        return {s: run_suite(s, oracle, n=options.n, seed=options.seed, keep=0, **size) for s in PHYSICS}
    if step == "vae":
        return vae_psnr(stage, options)
    if step == "samples":
        return [(p, generator_frames(generator, p, options)) for p in SAMPLE_PROMPTS]
    if step == "timing":
        return time_main_command(stage, options)
    raise AssertionError(step)


def generator_frames(generator, prompt: str, options: BundleOptions) -> np.ndarray:
    from kinetoscope.eval.suites import GenerationRequest

    empty = np.zeros((0, options.height, options.width, 3), dtype=np.uint8)
    request = GenerationRequest(
        prompt, empty, options.frames, options.width, options.height, options.fps, options.seed, False, "mixed"
    )
    return generator(request)


def vae_psnr(model_dir: Path, options: BundleOptions) -> dict[str, Any]:
    """Mean PSNR and SSIM of ``n`` held-out world clips (every in-distribution scenario) through the VAE."""
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct
    from kinetoscope.world import clip_seed, sample_clip

    vae = load_vae(model_dir, device=options.device)
    scores = []
    for index in range(options.n):
        clip = sample_clip(
            "mixed", seed=clip_seed(options.seed + 1, index), width=options.width, height=options.height,
            frames=options.frames, fps=options.fps,
        )  # fmt: skip
        frames = fit_frames(clip.frames, vae)
        scores.append(reconstruct(vae, frames)[1])
    errors = [s["object_error"] for s in scores if s["object_error"] is not None]
    return {
        "psnr": float(np.mean([s["psnr"] for s in scores])),
        "ssim": float(np.mean([s["ssim"] for s in scores])),
        "object_error": float(np.mean(errors)) if errors else None,
        "clips": len(scores),
        "shape": f"{len(frames)}x{frames.shape[2]}x{frames.shape[1]}",
    }


def main_command(model: str, options: BundleOptions, out: str) -> list[str]:
    return [
        "kinetoscope", "generate", MAIN_PROMPT, "--model", model, "--width", str(options.timing_width),
        "--height", str(options.timing_height), "--seconds", f"{options.timing_seconds:g}", "--out", out,
    ]  # fmt: skip


def time_main_command(model_dir: Path, options: BundleOptions) -> dict[str, Any]:
    """Run the README's main command from the bundle in a fresh CPU process and time it (imports and loading included)."""
    samples = model_dir / "samples"
    samples.mkdir(exist_ok=True)
    argv = main_command(str(model_dir), options, str(samples / "main_command.mp4"))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KINETOSCOPE_PROGRESS": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kinetoscope.cli", *argv[1:]], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise CheckpointError(f"The main command failed on the bundle: {done.stderr.strip().splitlines()[-1:]}")
    return {
        "seconds": seconds,
        "command": " ".join(_quote(a) for a in main_command(str(options.out), options, "ball.mp4")),
        "output": done.stdout.strip(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def _quote(arg: str) -> str:
    return f'"{arg}"' if " " in arg else arg


def bundle_command(options: BundleOptions) -> str:
    """The ``kinetoscope bundle`` command line that makes this bundle again."""
    import shlex

    argv = ["kinetoscope", "bundle", "--model", str(options.model), "--out", str(options.out)]
    if options.captioner is not None:
        argv += ["--captioner", str(options.captioner)]
    if options.vae is not None:
        argv += ["--vae", str(options.vae)]
    for run in options.runs:
        argv += ["--run", str(run)]
    argv += [
        "--dtype", options.dtype, "--max-mb", f"{options.max_mb:g}", "--n", str(options.n),
        "--size", f"{options.width}x{options.height}", "--frames", str(options.frames), "--seed", str(options.seed),
        "--timing-size", f"{options.timing_width}x{options.timing_height}", "--timing-seconds", f"{options.timing_seconds:g}",
        "--note", options.note,
    ]  # fmt: skip
    return shlex.join(argv)


def leg_figures(measured: dict[str, Any]) -> dict[str, float | None]:
    """What a leg is judged by: the objects suite's shares, the uniform velocity error, the VAE's PSNR."""
    rates = measured["objects"].claim_rates()
    velocity = measured["uniform"].summary()["velocity"]["mean"]
    return {
        **{k: rates.get(k) for k in ("colour", "shape", "motion")},
        "uniform_velocity": velocity,
        "vae_psnr": measured["vae"]["psnr"],
        "vae_object_error": measured["vae"]["object_error"],
    }


# ---------------------------------------------------------------- runs and pictures
def infer_runs(model: Path, captioner: Path | None, vae: Path | None = None) -> list[Path]:
    """The run directories behind the given exports: ``RUN/final`` -> ``RUN``, the runs of the VAE
    (the DiT run's, or ``vae``'s and the runs it was trained on from), and the captioner's."""
    candidates = [model.parent]
    vae_export = vae or _task_option(model.parent, "vae")
    while vae_export is not None and Path(vae_export).parent not in candidates:
        candidates.insert(0, Path(vae_export).parent)
        vae_export = _task_option(Path(vae_export).parent, "init_from")
    if captioner is not None:
        candidates.append(captioner.parent)
    return [c for c in dict.fromkeys(candidates) if (c / "config.json").is_file()]


def _task_option(run_dir: Path, name: str) -> str | None:
    config = run_dir / "config.json"
    return json.loads(config.read_text()).get("task", {}).get(name) if config.is_file() else None


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's config, metrics rows and (when the trainer wrote one) its summary."""
    from kinetoscope.train.logging import METRICS_CSV, read_metrics

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a training run directory: config.json is missing.", param="run")
    config = json.loads(config_path.read_text())
    rows = read_metrics(run_dir) if (run_dir / METRICS_CSV).is_file() else []
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return {"name": config["task"]["kind"], "dir": run_dir, "config": config, "rows": rows, "summary": summary}


def wall_seconds(run: dict[str, Any]) -> tuple[float | None, str]:
    """Training wall time: the trainer's summary, else estimated from the logged step rates."""
    if run["summary"] is not None:
        return float(run["summary"]["train_seconds"]), "measured"
    seconds, previous = 0.0, 0
    for row in run["rows"]:
        step, rate = int(row["step"]), float(row["steps_per_s"])
        seconds += (step - previous) / rate if rate > 0 else 0.0
        previous = step
    return (seconds, "estimated from metrics.csv") if run["rows"] else (None, "not recorded")


def draw_loss_curve(run: dict[str, Any], path: Path) -> str:
    """The run's logged loss against step, as a PNG (log scale when it spans more than 20x); returns its file name."""
    points = [(int(r["step"]), float(r["loss"])) for r in run["rows"] if _finite(r.get("loss"))]
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


def _finite(value: Any) -> bool:
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


def copy_run_configs(runs: list[dict[str, Any]], directory: Path) -> dict[str, Path]:
    """Each run's resolved config, so the retrain commands name files that ship with the model."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for run in runs:
        path = directory / f"{run['label']}.json"
        atomic_write_json(path, run["config"])
        out[run["label"]] = path
    return out


def _write_eval_report(directory: Path, results: list, options: BundleOptions) -> None:
    from kinetoscope.eval.report import write_report

    write_report(directory, results, title=f"{options.out} on the world suites", command=bundle_command(options))


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
        last = next((float(r["loss"]) for r in reversed(run["rows"]) if _finite(r.get("loss"))), None)
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
        "| suite | metric | this model (mean) | pass rate | clips | conditioning fidelity | floor | paper (Kang et al. 2024) |",
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
            f"| {PAPER_FIGURES.get(name, '–')} |"
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
