"""Captions and prompts: ``caption`` and ``expand``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.bundled import CAPTIONER, bundled_model
from kinetoscope.cli.app import app
from kinetoscope.cli.options import APIKeyEnv, Backend, BaseURL, ChatModel, Device, Dtype, Timeout


def _openai_backend(backend: str, base_url: Optional[str], model: Optional[str], api_key_env: str, timeout: float, frames: int = 4):
    """The OpenAI-compatible backend the options describe, or None for the built-in one."""
    from kinetoscope.errors import InvalidInputError

    if backend == "builtin":
        return None
    if backend != "openai":
        raise InvalidInputError(f"Unknown backend {backend!r}; use builtin or openai.", param="backend")
    if not base_url or not model:
        raise InvalidInputError("The openai backend needs --base-url URL and --model NAME.", param="base_url")
    from kinetoscope.language.openai_backend import OpenAIBackend

    return OpenAIBackend(base_url, model, api_key_env=api_key_env, timeout=timeout, frames=frames)


@app.command()
def caption(
    source: Path = typer.Argument(..., metavar="DIR_OR_MANIFEST", help="A folder of videos and images, or a JSONL manifest."),
    out: Path = typer.Option(..., "--out", help="The manifest to write (JSONL), with the new captions."),
    backend: Backend = "builtin",
    captioner: Optional[Path] = typer.Option(
        None, help="builtin backend: a trained captioner directory. Default: the bundled captioner."
    ),
    base_url: BaseURL = None,
    model: ChatModel = None,
    api_key_env: APIKeyEnv = "OPENAI_API_KEY",
    frames: int = typer.Option(4, help="openai backend: evenly spaced frames sent per video."),
    timeout: Timeout = 60.0,
    batch_size: int = typer.Option(8, min=1, help="Videos captioned together."),
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Write a detailed caption for every video or image, keeping any original caption as original_caption."""
    from kinetoscope.language.recaption import builtin_captioner, collect_entries, openai_captioner, recaption

    entries = collect_entries(source)
    remote = _openai_backend(backend, base_url, model, api_key_env, timeout, frames)
    caption_batch, max_frames, name = openai_captioner(remote) if remote is not None else builtin_captioner(captioner or bundled_model(CAPTIONER), device, dtype)
    result = recaption(entries, out, caption_batch, caption_source=name, max_frames=max_frames, batch_size=batch_size)
    for path, reason in result.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"captioned {result.written} file{'s' if result.written != 1 else ''} into {result.manifest}")


@app.command()
def expand(
    prompt: str = typer.Argument(..., help="A short prompt, e.g. \"a red ball bounces\"."),
    seed: int = typer.Option(0, help="Same prompt and seed, same expansion (built-in backend)."),
    backend: Backend = "builtin",
    size: str = typer.Option("128x128", help="WIDTHxHEIGHT of the clip the caption is for (what fits in the view)."),
    frames: int = typer.Option(32, help="Frames of the clip (event frame numbers)."),
    fps: float = typer.Option(10.0, help="Frames per second of the clip."),
    base_url: BaseURL = None,
    model: ChatModel = None,
    api_key_env: APIKeyEnv = "OPENAI_API_KEY",
    timeout: Timeout = 60.0,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: caption, unknown words, scenario, seed."),
) -> None:
    """Expand a short prompt into a detailed caption in the training captions' style."""
    import dataclasses
    import json

    from kinetoscope.language import expand_prompt
    from kinetoscope.pipeline.limits import parse_size

    width, height = parse_size(size)
    remote = _openai_backend(backend, base_url, model, api_key_env, timeout)
    result = expand_prompt(prompt, seed, remote or "builtin", width=width, height=height, frames=frames, fps=fps)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result)))
        return
    typer.echo(result.caption)
    if result.unknown_words:
        typer.echo(f"note: words outside the world's vocabulary, kept as written: {', '.join(result.unknown_words)}", err=True)
