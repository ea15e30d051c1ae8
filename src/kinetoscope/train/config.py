"""The trainer's configuration: one dataclass tree, read from YAML/TOML/JSON plus ``key=value`` overrides.

The ``task`` section is free-form here (``task.kind`` names the plug-in) and is validated by
the task's own config class, so adding a task never touches this file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from kinetoscope.config import Config, apply_overrides, load_config_file
from kinetoscope.errors import ConfigError

PARALLEL_MODES = ("none", "ddp", "fsdp")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("cosine", "constant")
DATA_SOURCES = ("synthetic", "world", "manifest", "latents")


@dataclasses.dataclass
class OptimConfig(Config):
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    eps: float = 1e-8


@dataclasses.dataclass
class ScheduleConfig(Config):
    #: ``cosine`` decays to ``min_lr_ratio * lr`` at the last step; ``constant`` holds ``lr``.
    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    #: Cosine only: decay over the last ``decay_steps`` steps and hold ``lr`` before them
    #: (warm-up, stable, decay), so a run trained in budgets can end one leg with a cool-down
    #: by setting ``steps`` to where the leg should end. 0 decays over every step after warm-up.
    decay_steps: int = 0

    def factor(self, step: int, total_steps: int) -> float:
        """Learning-rate multiplier for 0-based ``step``: linear warm-up, then constant or cosine decay."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        start = max(self.warmup_steps, total_steps - self.decay_steps) if self.decay_steps else self.warmup_steps
        progress = min(1.0, max(0, step - start) / max(1, total_steps - start))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclasses.dataclass
class EMAConfig(Config):
    #: 0 switches the EMA off.
    decay: float = 0.999
    #: Ramp the decay as ``min(decay, (1 + step) / (10 + step))`` so early averages are not stale.
    warmup: bool = True


@dataclasses.dataclass
class WorldDataConfig(Config):
    """Clips rendered on the fly: each sample draws a scenario, a size and a frame count."""

    scenarios: tuple[str, ...] = ("mixed",)
    #: (width, height) choices; several aspect ratios train the native-size path.
    sizes: tuple[tuple[int, int], ...] = ((64, 64),)
    #: Frame-count choices (1 is an image); rounded down to what the model accepts.
    frames: tuple[int, ...] = (17,)
    fps: float = 10.0


@dataclasses.dataclass
class DataConfig(Config):
    source: str = "synthetic"
    #: JSONL manifest (``source: manifest``).
    manifest: str | None = None
    #: A latent dataset directory written by ``kinetoscope data encode`` (``source: latents``, transformer only).
    latents: str | None = None
    world: WorldDataConfig = dataclasses.field(default_factory=WorldDataConfig)
    #: Loader worker processes per rank (0 loads in the training process).
    num_workers: int = 0
    #: Fixed samples per micro-batch and rank; 0 means group by ``token_budget`` instead.
    batch_size: int = 0
    #: Work per micro-batch and rank: latent tokens for the transformer, pixels for the VAE.
    token_budget: int = 0
    #: Samples looked ahead when filling a batch to its budget (1 = strictly in order).
    lookahead: int = 8
    #: Longest clip read from a manifest, in frames (clips are cut, never resampled).
    max_frames: int = 33
    #: Sides above this are scaled down (keeping the aspect ratio) before cropping to the model's multiple.
    max_side: int = 256


@dataclasses.dataclass
class TrainConfig(Config):
    run_dir: str = "runs/default"
    seed: int = 0
    steps: int = 1000
    grad_accum: int = 1
    #: Gradient-norm clip; 0 disables clipping.
    grad_clip: float = 1.0
    #: ``auto`` = bf16 autocast on CUDA and on a CPU with bf16 units (AMX, AVX-512 BF16), else fp32.
    precision: str = "auto"
    parallel: str = "none"
    activation_checkpointing: bool = False
    compile: bool = False
    checkpoint_every: int = 100
    keep_last: int = 3
    log_every: int = 10
    #: Periodic samples (tasks that can sample); 0 switches them off.
    sample_every: int = 0
    #: More consecutive non-finite steps than this stops the run.
    max_nan_streak: int = 20
    #: Export the EMA weights (not the raw ones) as the final model when the EMA is on.
    export_ema: bool = True
    #: Wall-clock budget of one invocation, in minutes (None: no limit). When it is spent the run
    #: stops after the current step, checkpoints and exports as at its last step; running the
    #: same command again resumes. A cosine schedule still decays over ``steps``, so budgeted runs
    #: suit ``schedule.kind: constant`` (a cut-short cosine never reaches its low learning rates).
    time_limit_minutes: float | None = None
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    ema: EMAConfig = dataclasses.field(default_factory=EMAConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    #: The plug-in's own section; ``kind`` names it (``vae``, ``dit``, ...).
    task: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "toy"})

    def __post_init__(self) -> None:
        _choice("parallel", self.parallel, PARALLEL_MODES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("schedule.kind", self.schedule.kind, SCHEDULES)
        _choice("data.source", self.data.source, DATA_SOURCES)
        for name in ("steps", "grad_accum", "checkpoint_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise ConfigError(f"time_limit_minutes must be above 0 (or null for no limit), got {self.time_limit_minutes}.")
        if not 0.0 <= self.ema.decay < 1.0:
            raise ConfigError(f"ema.decay must be in [0, 1), got {self.ema.decay}.")
        if self.data.batch_size < 0 or self.data.token_budget < 0:
            raise ConfigError("data.batch_size and data.token_budget must not be negative.")
        if not isinstance(self.task.get("kind"), str):
            raise ConfigError("The config's task section needs a kind (for example task.kind=vae).")

    @property
    def task_kind(self) -> str:
        return self.task["kind"]

    @property
    def task_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.task.items() if k != "kind"}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")


def load_train_config(
    kind: str, path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a config file for task ``kind``, apply ``key=value`` overrides and validate it.

    Relative paths in the config (run directory, manifest, model folders) are relative to
    the working directory, like every other path given to the command line.
    """
    path = resolve_config(path) if path is not None else None
    data: dict[str, Any] = load_config_file(path) if path is not None else {}
    task = data.pop("task", {})
    if not isinstance(task, dict):
        raise ConfigError("The config's task section must be a mapping.")
    declared = task.setdefault("kind", kind)
    if declared != kind:
        raise ConfigError(f"Config file {path} is for task {declared!r}, not {kind!r}; pick the matching command.")
    # Overrides may name any field, also one the file leaves at its default.
    defaults = TrainConfig().to_dict()
    merged = {**_deep_merge(defaults, data), "task": task}
    return TrainConfig.from_dict(apply_overrides(merged, list(overrides)))


#: The configs that ship with the package, addressable by name (``--config dit-tiny``).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def resolve_config(given: str | os.PathLike) -> Path:
    """A config file's path, or the shipped config of that name; refused in one sentence if neither."""
    path = Path(given)
    if path.is_file():
        return path
    shipped = CONFIGS / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.yaml")))
    raise ConfigError(f"Config file {given} does not exist, and no shipped config has that name (one of: {names}).")


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _deep_merge(base[key], value)
        else:
            out[key] = value
    return out
