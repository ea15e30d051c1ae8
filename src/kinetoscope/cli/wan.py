"""Wan2.1 checkpoints: ``wan import`` (diffusers' layout -> a model directory) and ``wan export`` (kinetoscope.wan)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.cli.app import app

wan_app = typer.Typer(
    help="Wan2.1 checkpoints in diffusers' layout: import them as model directories, export the transformer back.",
    no_args_is_help=True,
)
app.add_typer(wan_app, name="wan")


@wan_app.command("import")
def wan_import(
    source: Path = typer.Argument(
        ..., metavar="SRC", help="A local Wan2.1 text-to-video model in diffusers' layout (transformer/, vae/, ...)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The model directory to write."),
    dtype: Optional[str] = typer.Option(
        None, help="Store the transformer in float32, bfloat16 or float16. Default: the checkpoint's precision."
    ),
    name: Optional[str] = typer.Option(None, help="The model's name in its id (watermarks). Default: OUT's name."),
) -> None:
    """Convert a Wan2.1 model to a kinetoscope model directory that generate, serve and train load."""
    from kinetoscope.model_dir import read_index
    from kinetoscope.wan import import_wan

    written = import_wan(source, out, dtype=dtype, name=name)
    typer.echo(f"wrote {written} (model id {read_index(written)['model_id']})")


@wan_app.command("export")
def wan_export(
    model: Path = typer.Argument(
        ..., metavar="MODEL", help="A kinetoscope model directory whose transformer is Wan's (imported, fine-tuned)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The folder to write transformer/ (and LoRA weights) into."),
) -> None:
    """Write the transformer as diffusers' WanTransformer3DModel, and any LoRA adapters as diffusers loads them."""
    from kinetoscope.wan import export_wan

    for path in export_wan(model, out):
        typer.echo(f"wrote {path}")
