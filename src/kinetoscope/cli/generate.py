"""Generation, one command per mode of :class:`kinetoscope.pipeline.Pipeline`: ``generate`` (also
``--preview`` and ``--upscale``), ``image``, ``animate``, ``extend``, ``loop``, ``edit`` and ``connect``.

Every mode takes the same sampling options (:class:`Sampling`), listed after its own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from kinetoscope.bundled import WORLD, bundled_model
from kinetoscope.cli.app import app
from kinetoscope.cli.options import Device, Dtype, Expand, Fps, Frames, Guidance, Height, Model, Negative, Out, Seconds, Seed, Steps, Width


@dataclasses.dataclass
class Sampling:
    """The options every generation command takes."""

    steps: int
    guidance: Optional[float]
    seed: int
    negative: Optional[str]
    expand: bool
    model: Optional[Path]
    out: Optional[Path]
    device: str
    dtype: str

    def options(self) -> dict:
        """The pipeline keyword arguments among them."""
        return {
            "steps": self.steps,
            "guidance": self.guidance,  # None: the model's own
            "seed": self.seed,
            "negative_prompt": self.negative,
            "expand": self.expand,
        }


def _generate(sampling: Sampling, name: str, suffix: str, mode: str, *args, **options) -> None:
    """Load the model, run one pipeline mode (a ``Pipeline`` method) with a progress bar over the steps,
    save the result (default name: ``name`` as a slug + ``suffix``) and report it."""
    import contextlib
    import re

    from kinetoscope.pipeline import Pipeline
    from kinetoscope.progress import ProgressBar

    pipe = Pipeline.from_pretrained(sampling.model or bundled_model(WORLD), sampling.device, sampling.dtype)
    with contextlib.ExitStack() as stack:
        bar = None

        def progress(step: int, total: int) -> None:  # the bar starts once the sampler knows its step count
            nonlocal bar
            if bar is None:
                bar = stack.enter_context(ProgressBar(total, mode, unit="step"))
            bar.advance(1)

        result = getattr(pipe, mode)(*args, progress=progress, **sampling.options(), **options)
    out = sampling.out or Path((re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or mode) + suffix)
    result.save(out)
    _sign_if_configured(out, pipe.model_id)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    t, h, w = result.frames.shape[:3]
    length = "1 frame" if t == 1 else f"{t} frames at {result.fps:g} fps"
    typer.echo(f"wrote {out}: {length}, {w}x{h}, seed {result.seed}")


def _sign_if_configured(path: Path, model_id: str) -> None:
    """Sign a generated mp4 with C2PA when KINETOSCOPE_C2PA_CERT/KEY are set (every mode, one place)."""
    from kinetoscope.safety import SigningKey

    signing = SigningKey.from_env()
    if signing is None:
        return
    if path.suffix.lower() != ".mp4":
        typer.echo(f"note: C2PA signing applies to mp4 files; {path} was not signed.", err=True)
        return
    signing.sign(path, model_id)
    typer.echo(f"signed {path} with a C2PA manifest naming model {model_id}", err=True)


Prompt = Annotated[str, typer.Argument(help="What the video shows.")]


@app.command()
def generate(
    prompt: Prompt,
    preview: Annotated[bool, typer.Option("--preview", help="Sample small and fast: half the size, half the steps.")] = False,
    upscale: Annotated[
        Optional[Path], typer.Option("--upscale", metavar="PREVIEW", help="Bring this preview to full size (SDEdit from it).")
    ] = None,
    strength: Annotated[
        Optional[float], typer.Option(help="With --upscale: how much is re-sampled (0-1). Default: 0.6.")
    ] = None,
    width: Width = None, height: Height = None, frames: Frames = None, seconds: Seconds = None, fps: Fps = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Text to video at any size, duration and aspect ratio the model allows; --preview, then --upscale one."""
    from kinetoscope.errors import InvalidInputError

    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    if preview and upscale is not None:
        raise InvalidInputError("Give --preview or --upscale PREVIEW, not both.", param="upscale")
    if strength is not None and upscale is None:
        raise InvalidInputError(
            "--strength applies to --upscale PREVIEW (for editing a video use `kinetoscope edit`).", param="strength"
        )
    options = {"width": width, "height": height}
    if upscale is not None:
        if frames is not None or seconds is not None:
            raise InvalidInputError(
                "An upscale keeps the preview's length; leave out --frames and --seconds.", param="frames"
            )
        options |= {"strength": strength} if strength is not None else {}
        _generate(sampling, prompt, ".mp4", "upscale", upscale, prompt, fps=fps, **options)
        return
    options |= {"num_frames": frames, "seconds": seconds, "fps": fps}
    if preview:
        _generate(sampling, f"{prompt}-preview", ".mp4", "preview", prompt, **options)
    else:
        _generate(sampling, prompt, ".mp4", "generate", prompt, **options)


@app.command()
def image(
    prompt: Annotated[str, typer.Argument(help="What the image shows.")],
    width: Width = None, height: Height = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Text to image (one frame), up to 2048x2048; large images decode in VAE tiles."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    _generate(sampling, prompt, ".png", "image", prompt, width=width, height=height)


@app.command()
def animate(
    image_path: Annotated[Path, typer.Argument(metavar="IMAGE", help="The image (png, jpg, webp).")],
    prompt: Annotated[str, typer.Argument(help="What happens.")],
    frame: Annotated[int, typer.Option(help="Where the image goes: 0 (first), -1 (last) or any frame.")] = 0,
    width: Width = None, height: Height = None, frames: Frames = None, seconds: Seconds = None, fps: Fps = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Image to video: the image at the first frame, the last, or any frame."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    options = {"width": width, "height": height, "fps": fps}
    options |= {"num_frames": frames, "seconds": seconds, "image_frame": frame}
    _generate(sampling, prompt, ".mp4", "animate", image_path, prompt, **options)


@app.command()
def extend(
    video: Annotated[Path, typer.Argument(help="The video to continue.")],
    prompt: Annotated[str, typer.Argument(help="What happens next (or before).")],
    forward: Annotated[
        bool, typer.Option("--forward/--backward", help="Continue after the end, or lead up to the start.")
    ] = True,
    seconds: Annotated[float, typer.Option(help="Seconds to add.")] = 2.0,
    fps: Fps = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Extend a video forwards or backwards in time; its own frames stay as they were."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    direction = "forward" if forward else "backward"
    _generate(sampling, f"{prompt}-{direction}", ".mp4", "extend", video, prompt, direction=direction, seconds=seconds, fps=fps)


@app.command()
def loop(
    prompt: Annotated[str, typer.Argument(help="What the loop shows.")],
    video: Annotated[Optional[Path], typer.Option(help="Start the loop with this video's frames.")] = None,
    width: Width = None, height: Height = None,
    frames: Annotated[
        Optional[int], typer.Option("--frames", help="Frames of the loop (a multiple of 4; others are rounded and reported).")
    ] = None,
    seconds: Seconds = None, fps: Fps = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """A seamless loop: its last frame flows into its first."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    options = {"video": video, "width": width, "height": height, "num_frames": frames, "seconds": seconds, "fps": fps}
    _generate(sampling, f"{prompt}-loop", ".mp4", "loop", prompt, **options)


@app.command()
def edit(
    video: Annotated[Path, typer.Argument(help="The video to edit.")],
    prompt: Annotated[str, typer.Argument(help="What the video should become.")],
    strength: Annotated[
        Optional[float], typer.Option(help="How much changes, above 0 to 1: low keeps more of the video. Default: the pipeline's (0.7).")
    ] = None,
    width: Width = None, height: Height = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Video to video (SDEdit): layout and motion kept, what the prompt changes changed."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    options = {"width": width, "height": height} | ({} if strength is None else {"strength": strength})
    _generate(sampling, f"{prompt}-edit", ".mp4", "edit", video, prompt, **options)


@app.command()
def connect(
    first: Annotated[Path, typer.Argument(metavar="A", help="The video to start from.")],
    second: Annotated[Path, typer.Argument(metavar="B", help="The video to arrive at.")],
    prompt: Annotated[str, typer.Argument(help="What happens in between (optional).")] = "",
    seconds: Annotated[
        float, typer.Option(help="Seconds of transition (4k + 3 frames; other lengths are rounded and reported).")
    ] = 2.0,
    fps: Fps = None,
    steps: Steps = 30, guidance: Guidance = None, seed: Seed = 0, negative: Negative = None, expand: Expand = True,
    model: Model = None, out: Out = None, device: Device = "auto", dtype: Dtype = "auto",
) -> None:  # fmt: skip
    """Connect two videos: A, then a transition from A's end to B's start, then B."""
    sampling = Sampling(steps, guidance, seed, negative, expand, model, out, device, dtype)
    _generate(sampling, f"{first.stem}-to-{second.stem}", ".mp4", "connect", first, second, prompt, seconds=seconds, fps=fps)
