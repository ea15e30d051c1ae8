"""What ``kinetoscope bundle`` is asked, and the command line that makes a bundle again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from kinetoscope.errors import InvalidInputError


DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


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
    #: The classifier-free guidance the model samples with when a call names none (None: the model's own,
    #: else that of the bundle in ``out`` it replaces).
    guidance: float | None = None
    #: The further time shift of the sampler (:attr:`kinetoscope.flow.FlowConfig.sample_shift`); None as for guidance.
    sample_shift: float | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InvalidInputError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.", param="dtype")
        if not self.note.strip():
            raise InvalidInputError("Say how the model was trained with --note (it goes into MODEL.md).", param="note")
        if self.n < 1:
            raise InvalidInputError(f"--n must be at least 1, got {self.n}.", param="n")
        if self.guidance is not None and not self.guidance >= 0:
            raise InvalidInputError(f"--guidance must be at least 0, got {self.guidance:g}.", param="guidance")
        if self.sample_shift is not None and not self.sample_shift > 0:
            raise InvalidInputError(f"--sample-shift must be above 0, got {self.sample_shift:g}.", param="sample_shift")
        from kinetoscope.devices import resolve_device

        self.device = str(resolve_device(self.device))


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
    if options.guidance is not None:
        argv += ["--guidance", f"{options.guidance:g}"]
    if options.sample_shift is not None:
        argv += ["--sample-shift", f"{options.sample_shift:g}"]
    argv += [
        "--dtype", options.dtype, "--max-mb", f"{options.max_mb:g}", "--n", str(options.n),
        "--size", f"{options.width}x{options.height}", "--frames", str(options.frames), "--seed", str(options.seed),
        "--timing-size", f"{options.timing_width}x{options.timing_height}", "--timing-seconds", f"{options.timing_seconds:g}",
        "--note", options.note,
    ]  # fmt: skip
    return shlex.join(argv)
