"""Training and shipping models: ``train vae|dit|captioner`` and ``bundle``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.cli.app import app
from kinetoscope.cli.options import ConfigFile, Device, Overrides, Resume


train_app = typer.Typer(
    help="Train the models with one loop: config files, torchrun (DDP/FSDP2), checkpoints and exact resume.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

def _train(kind: str, config: Path, overrides: Optional[list[str]], resume: Optional[Path]) -> None:
    import os

    from kinetoscope.train import load_train_config, train

    cfg = load_train_config(kind, config, overrides or [])
    final = train(cfg, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, say it once
        typer.echo(f"Trained {kind} written to {final}")


@train_app.command("vae")
def train_vae(config: ConfigFile, set_: Overrides = None, resume: Resume = None) -> None:
    """Train the causal 3D VAE on the world or a manifest at native sizes."""
    _train("vae", config, set_, resume)


@train_app.command("dit")
def train_dit(config: ConfigFile, set_: Overrides = None, resume: Resume = None) -> None:
    """Train (or fine-tune, fully or with LoRA) the diffusion transformer and its text encoder on VAE latents."""
    _train("dit", config, set_, resume)


@train_app.command("captioner")
def train_captioner(config: ConfigFile, set_: Overrides = None, resume: Resume = None) -> None:
    """Train the re-captioner (video to detailed caption) on world clips or a manifest."""
    _train("captioner", config, set_, resume)


@train_app.command("toy", hidden=True)
def train_toy(config: ConfigFile, set_: Overrides = None, resume: Resume = None) -> None:
    """Train the toy regression task that tests the loop itself."""
    _train("toy", config, set_, resume)


# ---------------------------------------------------------------- bundle (kinetoscope.release)
@app.command("bundle")
def bundle_command(
    model: Path = typer.Option(..., help="A trained transformer export: the final/ directory of `kinetoscope train dit`."),
    note: str = typer.Option(..., help="How the model was trained, in a sentence (goes into MODEL.md as written)."),
    captioner: Optional[Path] = typer.Option(None, help="A trained captioner directory to ship as captioner/."),
    vae: Optional[Path] = typer.Option(
        None, help="A VAE to ship instead of the model's: one whose decoder alone trained on (task.train_encoder: false)."
    ),
    run: Optional[list[Path]] = typer.Option(
        None, "--run", help="A run directory (config.json, metrics.csv) for the card (repeatable). Default: the runs behind --model and --captioner."
    ),
    out: Path = typer.Option(Path("models/world"), help="The bundle directory (replaced whole when everything succeeded)."),
    dtype: str = typer.Option("fp16", help="Storage precision of the weights: fp16 or bf16 (they load in fp32 on a CPU)."),
    max_mb: float = typer.Option(150.0, help="Refuse a bundle larger than this many megabytes."),
    n: int = typer.Option(10, "--n", min=1, help="Clips per evaluation suite (and for the VAE PSNR)."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the evaluation clips (the paper's is 128x128)."),
    frames: int = typer.Option(32, min=2, help="Frames per evaluation clip (the paper's is 32)."),
    seed: int = typer.Option(0, help="Seed of the evaluation clips and samples."),
    device: Device = "auto",
    timing_size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the timed main command."),
    timing_seconds: float = typer.Option(2.0, help="Seconds of video the timed main command makes."),
    guidance: Optional[float] = typer.Option(
        None,
        help="The guidance the model samples with when a call names none (measure it first). "
        "Default: the model's own, else that of the bundle it replaces.",
    ),
    sample_shift: Optional[float] = typer.Option(
        None,
        help="A further time shift of the sampler, on top of training's (above 1: more steps at high noise; "
        "measure it first). Default: that of the bundle it replaces, else the model's own.",
    ),
) -> None:
    """Ship a trained model: copy it in fp16, evaluate it, time the main command and write MODEL.md."""
    from kinetoscope.release import BundleOptions, bundle
    from kinetoscope.pipeline.limits import parse_size

    width, height = parse_size(size)
    timing_width, timing_height = parse_size(timing_size)
    options = BundleOptions(
        model=model, out=out, captioner=captioner, vae=vae, runs=tuple(run or ()), dtype=dtype, max_mb=max_mb, n=n,
        width=width, height=height, frames=frames, seed=seed, device=device, note=note,
        timing_width=timing_width, timing_height=timing_height, timing_seconds=timing_seconds, guidance=guidance,
        sample_shift=sample_shift,
    )  # fmt: skip
    card = bundle(options)
    typer.echo(f"wrote {card.parent} and its model card {card}")
