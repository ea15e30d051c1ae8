"""Measuring models: ``eval videos|world|vae`` and ``vae reconstruct``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from kinetoscope.bundled import WORLD, bundled_model
from kinetoscope.cli.app import app
from kinetoscope.cli.options import Device, Dtype, Model, VAEModel
from kinetoscope.devices import resolve_device


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
        rates = result.claim_rates()
        if rates:
            shares = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in rates.items())
            typer.echo(f"{result.suite.name:<14} objects shown: {shares}")
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
    model: Model = None,
    suite: str = typer.Option(
        ..., help="uniform, collision, parabola (each also -ood), adherence, objects, permanence, pan, flicker or loop."
    ),
    n: int = typer.Option(10, "--n", min=1, help="How many clips."),
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the clips."),
    frames: int = typer.Option(32, min=2, help="Frames per clip."),
    fps: float = typer.Option(10.0, help="Frames per second."),
    seed: int = typer.Option(0, help="Seed of the world clips (and of generation)."),
    given: Optional[int] = typer.Option(
        None, help="First frames handed to the model instead of the suite's own (3 for the physics suites, none for prompt-only ones)."
    ),
    through_vae: bool = typer.Option(
        False,
        "--through-vae",
        help="Score the world's own clips after the model's VAE encodes and decodes them: the most its transformer can reach.",
    ),
    device: Device = "auto",
    dtype: Dtype = "auto",
    out: Path = typer.Option(..., help="Folder for results.json, report.md and its pictures."),
) -> None:
    """Generate world clips with a model (given their first frames) and score them against the world's ground truth."""
    from kinetoscope.eval.report import write_report
    from kinetoscope.eval.suites import get_suite, pipeline_generator, run_suite, world_oracle

    get_suite(suite)
    model = model or bundled_model(WORLD)
    if through_vae:
        from kinetoscope.vae.evaluate import load_vae

        vae = load_vae(model, device=resolve_device(device))
        generator, title = world_oracle(vae=vae), f"the world's clips through the VAE of {model} on the {suite} suite"
    else:
        generator = pipeline_generator(model, device=device, dtype=dtype)  # says so first when there is no pipeline
        title = f"{model} on the {suite} suite"
    from kinetoscope.pipeline.limits import parse_size

    width, height = parse_size(size)
    if through_vae:
        vae.latent_shape(frames, height, width)  # refuse a shape the VAE cannot take before any work
    result = run_suite(suite, generator, n=n, seed=seed, width=width, height=height, frames=frames, fps=fps, given=given)
    report = write_report(out, [result], title=title, command=" ".join(["kinetoscope", *sys.argv[1:]]))
    _print_summary([result], report)


# ---------------------------------------------------------------- vae (kinetoscope.vae)
vae_app = typer.Typer(help="The causal 3D VAE: compress videos to latents and back.", no_args_is_help=True)
app.add_typer(vae_app, name="vae")

@vae_app.command("reconstruct")
def vae_reconstruct(
    source: Path = typer.Argument(..., metavar="IN", help="A video, image or folder of frames."),
    out: Path = typer.Option(..., "-o", "--out", help="The reconstruction: .mp4, .gif, .webp, an image or a folder."),
    model: VAEModel = None,
    fit: bool = typer.Option(
        False, "--fit", help="Drop trailing frames to 1 + 4k and centre-crop to multiples of 8 instead of refusing."
    ),
    tile_size: int = typer.Option(512, min=0, help="Split frames larger than this many pixels into tiles (0: never)."),
    device: Device = "auto",
) -> None:
    """Encode a video or image with the VAE, decode it again, write the result and print PSNR and SSIM."""
    from kinetoscope.io import read_video, write_image, write_video
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct

    vae = load_vae(model or bundled_model(WORLD), device=resolve_device(device))
    video = read_video(source)
    frames = fit_frames(video.frames, vae) if fit else video.frames
    vae.latent_shape(*frames.shape[:3])  # refuse shapes the VAE cannot take before any work
    result, scores = reconstruct(vae, frames, tile_size=tile_size or None)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg") and len(result) == 1:
        write_image(out, result[0])
    else:
        write_video(out, result, video.fps)
    t, h, w = result.shape[:3]
    typer.echo(f"wrote {out}: {t} frames, {w}x{h}, PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")


@eval_app.command("vae")
def eval_vae(
    manifest: Path = typer.Option(..., help="JSONL manifest of the videos and images to reconstruct."),
    model: VAEModel = None,
    limit: Optional[int] = typer.Option(None, min=1, help="Score only the first N entries."),
    device: Device = "auto",
) -> None:
    """Reconstruct a manifest's clips through the VAE (each fitted to 1 + 4k frames, multiples of 8) and print PSNR and SSIM."""
    from kinetoscope.data.manifest import read_manifest
    from kinetoscope.errors import InvalidInputError
    from kinetoscope.io import read_video
    from kinetoscope.progress import ProgressBar
    from kinetoscope.vae.evaluate import fit_frames, load_vae, reconstruct

    entries = read_manifest(manifest)[:limit]
    if not entries:
        raise InvalidInputError(f"Manifest {manifest} has no entries to score.", param="manifest")
    vae = load_vae(model or bundled_model(WORLD), device=resolve_device(device))
    totals = {"psnr": 0.0, "ssim": 0.0}
    with ProgressBar(len(entries), "reconstructing", unit="clip") as bar:
        for entry in entries:
            _, scores = reconstruct(vae, fit_frames(read_video(entry.path).frames, vae))
            for key in totals:
                totals[key] += scores[key]
            bar.advance(1, psnr=f"{scores['psnr']:.2f}")
    n = len(entries)
    typer.echo(f"{n} clips: PSNR {totals['psnr'] / n:.2f} dB, SSIM {totals['ssim'] / n:.4f}")
