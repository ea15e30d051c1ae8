"""The procedural world and datasets: ``world sample|scenarios`` and ``data encode``."""

from __future__ import annotations

from pathlib import Path

import typer

from kinetoscope.cli.app import app
from kinetoscope.cli.options import Device
from kinetoscope.devices import resolve_device


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
    from kinetoscope.data.world_clips import write_world_dataset
    from kinetoscope.pipeline.limits import parse_size

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


# ---------------------------------------------------------------- data (kinetoscope.data)
data_app = typer.Typer(help="Datasets: encode clips to latents once, for training the transformer.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("encode")
def data_encode(
    source: str = typer.Argument(..., help="A JSONL manifest, or `world` to render clips of the procedural world."),
    vae: Path = typer.Option(..., "--vae", help="The frozen VAE: a VAE directory, or a model directory with vae/ inside."),
    out: Path = typer.Option(..., "--out", "-o", help="The latent dataset directory to write (must not hold one)."),
    n: int = typer.Option(1000, "--n", min=1, help="world: how many clips."),
    scenarios: str = typer.Option("mixed", help="world: comma-separated scenario names, each clip picks one."),
    sizes: str = typer.Option("128x128", help="world: comma-separated WIDTHxHEIGHT sizes, each clip picks one."),
    frames: str = typer.Option("17", help="world: comma-separated frame counts (1 + 4k), each clip picks one."),
    fps: float = typer.Option(10.0, help="world: frames per second."),
    seed: int = typer.Option(0, help="world: same seed, same clips."),
    max_frames: int = typer.Option(33, min=1, help="manifest: longest clip kept, in frames (cut, never resampled)."),
    max_side: int = typer.Option(256, min=8, help="manifest: longer sides are scaled down to this."),
    batch_size: int = typer.Option(16, min=1, help="Clips of one shape encoded together."),
    device: Device = "auto",
) -> None:
    """Encode clips once with a frozen VAE into a latent dataset (safetensors shards: latents, captions, ground truth)."""
    from kinetoscope.data.datasets import ShapeRule
    from kinetoscope.errors import InvalidInputError
    from kinetoscope.data.latents import manifest_items, world_items, write_latent_dataset
    from kinetoscope.vae.evaluate import load_vae
    from kinetoscope.world import SCENARIOS
    from kinetoscope.pipeline.limits import parse_size

    model = load_vae(vae)  # refuse a missing VAE before anything is rendered or read
    skipped: list[tuple[str, str]] = []
    if source == "world":
        names = tuple(name.strip() for name in scenarios.split(","))
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown:
            raise InvalidInputError(f"Unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}.", param="scenarios")
        shapes = tuple(parse_size(size) for size in sizes.split(","))
        if not all(count.strip().isdigit() for count in frames.split(",")):
            raise InvalidInputError(f"--frames takes comma-separated whole numbers, got {frames!r}.", param="frames")
        counts = tuple(int(count) for count in frames.split(","))
        for width, height in shapes:
            model.check_size(height, width)
        for count in counts:
            model.check_frames(count)
        items, total = world_items(n, seed=seed, scenarios=names, sizes=shapes, frames=counts, fps=fps), n
    else:
        shape = ShapeRule(model.spatial_compression, model.temporal_compression, max_frames, max_side)
        items, total = manifest_items(source, shape, skipped=skipped), None
    del model
    index = write_latent_dataset(items, vae, out, total=total, batch_size=batch_size, device=resolve_device(device))
    for what, why in skipped:
        typer.echo(f"skipped {what}: {why}", err=True)
    typer.echo(f"wrote {index}")
