"""Reading and converting media: ``info`` and ``convert`` (kinetoscope.io)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kinetoscope.cli.app import app


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
    from kinetoscope.io import read_video, write_image, write_video

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
