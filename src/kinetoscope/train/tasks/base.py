"""What a model brings to the one training loop: its modules, its data, its loss, its export.

A task never sees parallelism: the loop builds its modules, wraps them (DDP/FSDP2,
activation checkpointing, compile), and hands the wrapped ones back to :meth:`Task.loss`,
which must call them (``module(...)``, i.e. ``forward``) so gradients are synchronised.
Sampling and export receive plain, unwrapped copies holding the EMA (or final) weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.loader import SampleSource
from kinetoscope.train.config import TrainConfig
from kinetoscope.train.distributed import DistInfo


@dataclasses.dataclass
class OptimizerSpec:
    """One AdamW over the named modules, at ``lr_scale`` times the configured learning rate."""

    modules: tuple[str, ...]
    lr_scale: float = 1.0


@dataclasses.dataclass
class LossOutput:
    #: optimizer name -> the loss it minimises (one entry for single-optimizer tasks).
    losses: dict[str, torch.Tensor]
    #: Extra scalars to log; report the same keys every step.
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Work done in this micro-batch (tokens or pixels), for the throughput column.
    tokens: int = 0


class ShapeGroups(nn.Module):
    """Run a module once per group of same-shaped inputs, inside ONE forward call.

    Native-size batches hold several shapes; DDP and FSDP2 expect one forward per backward,
    so the groups go through this wrapper's single ``forward``. ``module`` is the real model.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, inputs: list[torch.Tensor], **kwargs: Any) -> list[Any]:
        return [self.module(x, **kwargs) for x in inputs]


@dataclasses.dataclass
class StepContext:
    step: int
    device: torch.device
    #: This rank's CPU generator for the task's own draws (noise, times, masks); saved in checkpoints.
    generator: torch.Generator


class Task:
    """Base class of training plug-ins: subclass, set ``config_class`` and implement the abstract methods."""

    #: The task's own config: the ``task`` section of the training config, without ``kind``.
    config_class: ClassVar[type[Config]]
    #: Modules left out of the EMA (a discriminator, say).
    no_ema: ClassVar[tuple[str, ...]] = ()
    #: Modules always replicated with DDP, never sharded (small modules used in two backward passes).
    replicate_only: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Config, train: TrainConfig, info: DistInfo, run_dir: Path):
        self.options = options
        self.train = train
        self.info = info
        self.run_dir = run_dir

    def prepare(self) -> None:
        """Work before models are built (e.g. training a tokenizer); every rank calls it."""

    def build_models(self) -> dict[str, nn.Module]:
        """Fresh trainable modules by name; called with the same seed on every rank."""
        raise NotImplementedError

    def optimizers(self, models: dict[str, nn.Module]) -> dict[str, OptimizerSpec]:
        """Which modules each optimizer trains; losses come back keyed the same way."""
        return {"main": OptimizerSpec(tuple(models))}

    def blocks(self, name: str, module: nn.Module) -> list[nn.Module]:
        """The repeated units of a module: sharded, checkpointed and compiled one by one."""
        blocks = getattr(module, "blocks", None)
        return list(blocks) if isinstance(blocks, nn.ModuleList) else []

    def data(self) -> tuple[SampleSource, Any]:
        """This rank's sample source and the collate function for a list of its samples."""
        raise NotImplementedError

    def loss(self, models: dict[str, nn.Module], batch: Any, ctx: StepContext) -> LossOutput:
        raise NotImplementedError

    @property
    def can_sample(self) -> bool:
        return type(self).sample is not Task.sample

    def sample(self, models: dict[str, nn.Module], step: int, out_dir: Path) -> list[Path]:
        """Write samples from plain modules into ``out_dir`` (rank 0 only); return the files."""
        raise NotImplementedError

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        """Save the trained model (rank 0 only), e.g. with ``save_pretrained``."""
        raise NotImplementedError
