"""The ``kinetoscope`` command line: one typer app; each command is a thin call into the library.

Heavy imports (torch, av) happen inside commands so that ``--help`` stays instant.
Any :class:`~kinetoscope.errors.KinetoscopeError` becomes one sentence on stderr and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from kinetoscope.errors import KinetoscopeError

app = typer.Typer(
    name="kinetoscope",
    help="Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from kinetoscope import __version__

        typer.echo(f"kinetoscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer."""


# ---------------------------------------------------------------- io (kinetoscope.io)
@app.command()
def info(
    file: Path = typer.Argument(..., help="A video (mp4, gif, webp, ...), an image, or a folder of frames."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of aligned lines."),
) -> None:
    """Print a video's fps, frame count, duration, size and codec (from metadata; nothing is decoded)."""
    import dataclasses
    import json

    from kinetoscope.io import probe

    fields = {"file": str(file), **dataclasses.asdict(probe(file))}
    if as_json:
        typer.echo(json.dumps(fields))
        return
    fields["size"] = f"{fields.pop('width')}x{fields.pop('height')}"
    fields["fps"] = f"{fields['fps']:g}"
    fields["duration"] = f"{fields['duration']:.3f} s"
    for key in ("file", "codec", "size", "fps", "num_frames", "duration"):
        typer.echo(f"{key.replace('num_', ''):<9} {fields[key]}")


@app.command()
def convert(
    source: Path = typer.Argument(..., metavar="IN", help="Any readable video, image or folder of frames."),
    target: Path = typer.Argument(..., metavar="OUT", help="An .mp4, .gif, .webp, an image (.png, .jpg) or a folder."),
    fps: Optional[float] = typer.Option(None, help="Resample to this frame rate (nearest frame). Default: keep."),
    start: Optional[float] = typer.Option(None, help="First second to keep. Default: the beginning."),
    end: Optional[float] = typer.Option(None, help="Second to stop at (exclusive). Default: the end."),
    quality: Optional[int] = typer.Option(
        None, min=0, max=100, help="0-100, higher is better (mp4 CRF, WebP/jpg quality). Default: 75 (jpg 95)."
    ),
) -> None:
    """Convert between video formats, images and folders of frames, optionally cutting and resampling."""
    import warnings

    from kinetoscope.errors import InvalidInputError
    from kinetoscope.io import is_video_path, read_video, write_image, write_video

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video = read_video(source, start=start, end=end, fps=fps)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    if target.suffix.lower() in (".png", ".jpg", ".jpeg"):
        if video.num_frames != 1:
            raise InvalidInputError(
                f"{target} is an image but {source} gives {video.num_frames} frames; "
                "write a .mp4, .gif, .webp or a folder, or pick one frame with --start/--end.",
                param="target",
            )
        write_image(target, video.frames[0], **({} if quality is None else {"quality": quality}))
    else:
        write_video(target, video.frames, video.fps, **({} if quality is None else {"quality": quality}))
    frames = "1 frame" if video.num_frames == 1 else f"{video.num_frames} frames"
    typer.echo(f"wrote {target}: {frames}, {video.width}x{video.height}, {video.fps:g} fps")


# ---------------------------------------------------------------- world (kinetoscope.world)
world_app = typer.Typer(help="The procedural physical world: render clips with ground truth.", no_args_is_help=True)
app.add_typer(world_app, name="world")


@world_app.command("sample")
def world_sample(
    scenario: str = typer.Option("mixed", help="Scenario name; `kinetoscope world scenarios` lists them."),
    n: int = typer.Option(1, "--n", help="How many clips."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT in pixels, each 4 to 2048."),
    frames: int = typer.Option(32, help="Frames per clip (1 writes PNG images)."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Same seed, same clips and a byte-identical manifest."),
    out: Path = typer.Option(..., help="Folder for the clips, their ground truth and manifest.jsonl."),
) -> None:
    """Render clips of the procedural world as mp4, each with its ground truth, plus a JSONL manifest."""
    from kinetoscope.world.dataset import parse_size, write_world_dataset

    width, height = parse_size(size)
    manifest = write_world_dataset(
        out, scenario=scenario, n=n, width=width, height=height, frames=frames, fps=fps, seed=seed
    )
    typer.echo(f"wrote {n} clip{'s' if n != 1 else ''} and {manifest}")


@world_app.command("scenarios")
def world_scenarios() -> None:
    """List the world's scenarios with a one-line description each."""
    from kinetoscope.world import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        typer.echo(f"{scenario.name:<{width}}  {scenario.description}")


# ---------------------------------------------------------------- train (kinetoscope.train)
train_app = typer.Typer(
    help="Train the models with one loop: config files, torchrun (DDP/FSDP2), checkpoints and exact resume.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_CONFIG_OPTION = typer.Option(..., "--config", "-c", help="YAML, TOML or JSON config (see configs/).")
_SET_OPTION = typer.Option(None, "--set", help="Override a config value, e.g. --set optim.lr=1e-4 (repeatable).")
_RESUME_OPTION = typer.Option(
    None, "--resume", help="Resume from this checkpoint or run directory (a run directory with checkpoints resumes by itself)."
)


def _train(kind: str, config: Path, overrides: Optional[list[str]], resume: Optional[Path]) -> None:
    import os

    from kinetoscope.train import load_train_config, train

    cfg = load_train_config(kind, config, overrides or [])
    final = train(cfg, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, say it once
        typer.echo(f"Trained {kind} written to {final}")


@train_app.command("vae")
def train_vae(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the causal 3D VAE on the world or a manifest at native sizes."""
    _train("vae", config, set_, resume)


@train_app.command("dit")
def train_dit(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train (or fine-tune, fully or with LoRA) the diffusion transformer and its text encoder on VAE latents."""
    _train("dit", config, set_, resume)


@train_app.command("captioner")
def train_captioner(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the re-captioner (not available yet)."""
    typer.echo("error: training the captioner is not available yet: the re-captioner has not been built.", err=True)
    raise typer.Exit(2)


@train_app.command("toy", hidden=True)
def train_toy(config: Path = _CONFIG_OPTION, set_: Optional[list[str]] = _SET_OPTION, resume: Optional[Path] = _RESUME_OPTION) -> None:
    """Train the toy regression task that tests the loop itself."""
    _train("toy", config, set_, resume)


# ---------------------------------------------------------------- eval (kinetoscope.eval)
eval_app = typer.Typer(
    help="Measure world simulation without pretrained networks: velocity error, adherence, permanence, consistency, flicker.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")


def _print_summary(results: list, report: Path) -> None:
    for result in results:
        for metric, row in result.summary().items():
            mean = "-" if row["mean"] is None else f"{row['mean']:.4g} {row['unit']}"
            rate = "-" if row["pass_rate"] is None else f"{100 * row['pass_rate']:.0f}% pass"
            typer.echo(f"{result.suite.name:<14} {metric:<13} {mean:<28} {rate:<10} ({row['clips']} of {row['of']} clips)")
    typer.echo(f"wrote {report} and {report.parent / 'results.json'}")


@eval_app.command("videos")
def eval_videos(
    manifest: Path = typer.Option(..., help="JSONL manifest of the videos to score; ground truth from each line's state."),
    out: Path = typer.Option(..., help="Folder for results.json, report.md and its pictures."),
    given: int = typer.Option(3, min=0, help="First frames that were given (not generated): scored for fidelity, not velocity."),
) -> None:
    """Score existing videos against the ground truth their manifest names, and write JSON and a report with pictures."""
    from kinetoscope.eval.report import write_report
    from kinetoscope.eval.suites import score_manifest

    results = score_manifest(manifest, given=given)
    report = write_report(out, results, title=f"Evaluation of {manifest}", command=" ".join(["kinetoscope", *sys.argv[1:]]))
    _print_summary(results, report)


@eval_app.command("world")
def eval_world(
    model: Path = typer.Option(..., help="Model directory with a generation pipeline."),
    suite: str = typer.Option(..., help="uniform, collision, parabola (each also -ood), adherence, permanence, pan, flicker or loop."),
    n: int = typer.Option(10, "--n", min=1, help="How many clips."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the clips."),
    frames: int = typer.Option(32, min=2, help="Frames per clip."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Seed of the world clips (and of generation)."),
    out: Path = typer.Option(..., help="Folder for results.json, report.md and its pictures."),
) -> None:
    """Generate world clips with a model (given their first frames) and score them against the world's ground truth."""
    from kinetoscope.eval.report import write_report
    from kinetoscope.eval.suites import get_suite, pipeline_generator, run_suite
    from kinetoscope.world.dataset import parse_size

    get_suite(suite)
    width, height = parse_size(size)
    generator = pipeline_generator(model)
    result = run_suite(suite, generator, n=n, seed=seed, width=width, height=height, frames=frames, fps=fps)
    report = write_report(out, [result], title=f"{model} on the {suite} suite", command=" ".join(["kinetoscope", *sys.argv[1:]]))
    _print_summary([result], report)


# ---------------------------------------------------------------- entry point
def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by ``main`` and the tests)."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode lets click/typer print usage errors and help the way users expect.
        command.main(args=argv, prog_name="kinetoscope", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KinetoscopeError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
