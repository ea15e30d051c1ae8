"""Options several commands share, as ``Annotated`` aliases: a command names ``model: Model = None``
and gets the same flag and help text as every other command that takes a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Model = Annotated[
    Optional[Path],
    typer.Option("--model", help="Model directory (model_index.json, vae/, dit/, text/). Default: the bundled model."),
]
VAEModel = Annotated[
    Optional[Path],
    typer.Option("--model", help="A VAE directory, or a model directory with vae/ inside. Default: the bundled model."),
]
Device = Annotated[
    str, typer.Option(help="Where to run: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps.")
]
Dtype = Annotated[
    str,
    typer.Option(
        help="Precision: auto (bfloat16 on CUDA, float32 on the CPU and MPS), float32, bfloat16 or float16."
    ),
]
Out = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Output: .mp4, .gif, .webp, a folder, or .png for one frame. Default: from the prompt."),
]
Width = Annotated[
    Optional[int],
    typer.Option(help="Width in pixels, rounded to the model's grid (reported). Default: the input's, else the model's."),
]
Height = Annotated[Optional[int], typer.Option(help="Height in pixels (rounded like --width).")]
Frames = Annotated[Optional[int], typer.Option("--frames", help="Frames of the clip (exact). Default: 2 seconds.")]
Seconds = Annotated[Optional[float], typer.Option(help="Duration in seconds instead of --frames.")]
Fps = Annotated[Optional[float], typer.Option(help="Frames per second. Default: the input video's, else the model's.")]

# Sampling: every generation mode takes these.
Steps = Annotated[int, typer.Option(help="Sampling steps.")]
Guidance = Annotated[
    Optional[float],
    typer.Option(help="Classifier-free guidance scale (1 switches it off). Default: the model's own (see its MODEL.md)."),
]
Seed = Annotated[int, typer.Option(help="Same seed, same frames.")]
Negative = Annotated[Optional[str], typer.Option("--negative", help="What the video should not show.")]
Expand = Annotated[bool, typer.Option("--expand/--no-expand", help="Expand the prompt into a detailed caption first.")]

# The OpenAI-compatible language backend: caption and expand take these.
Backend = Annotated[
    str, typer.Option(help="builtin (the world-trained model) or openai (any OpenAI-compatible chat endpoint).")
]
BaseURL = Annotated[
    Optional[str], typer.Option("--base-url", help="openai backend: the endpoint, e.g. http://localhost:8000/v1.")
]
ChatModel = Annotated[Optional[str], typer.Option("--model", help="openai backend: the model name.")]
APIKeyEnv = Annotated[str, typer.Option(help="openai backend: the environment variable holding the API key.")]
Timeout = Annotated[float, typer.Option(help="openai backend: seconds to wait for an answer.")]

# Training: every ``train`` command takes these.
ConfigFile = Annotated[
    Path,
    typer.Option(
        "--config", "-c",
        help="A YAML, TOML or JSON config file, or the name of a shipped one (dit-tiny, dit-cpu, vae-cpu, ...).",
    ),
]  # fmt: skip
Overrides = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. --set optim.lr=1e-4 (repeatable).")
]
Resume = Annotated[
    Optional[Path],
    typer.Option(
        "--resume",
        help="Resume from this checkpoint or run directory (a run directory with checkpoints resumes by itself).",
    ),
]
