"""A toy regression task: the smallest complete plug-in, used to test the loop itself.

It has what the real tasks have that can break exact resumption (dropout drawing from the
global RNG, noise drawn from the step generator, an index-addressed data stream) and a hook
that turns chosen steps' losses into NaN.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kinetoscope.config import Config
from kinetoscope.data.seeding import derive_seed
from kinetoscope.modeling import PretrainedModel
from kinetoscope.train.tasks.base import LossOutput, StepContext, Task


@dataclasses.dataclass
class ToyConfig(Config):
    dim: int = 8
    hidden: int = 32
    depth: int = 2
    dropout: float = 0.1
    #: Standard deviation of input noise drawn from the step generator.
    input_noise: float = 0.01
    #: Steps whose loss is replaced by NaN (to test skipping).
    nan_steps: tuple[int, ...] = ()


class ToyBlock(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(torch.nn.functional.gelu(self.linear(x)))


class ToyModel(PretrainedModel):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.embed = nn.Linear(config.dim, config.hidden)
        self.blocks = nn.ModuleList(ToyBlock(config.hidden, config.dropout) for _ in range(config.depth))
        self.head = nn.Linear(config.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h).squeeze(-1)


class ToySource:
    """Sample ``i``: a Gaussian vector and a smooth target, both fixed by ``(seed, i)``."""

    def __init__(self, seed: int, dim: int):
        self.seed = seed
        self.weights = np.random.default_rng(derive_seed(seed, "toy-weights")).standard_normal(dim) / np.sqrt(dim)

    def cost(self, index: int) -> int:
        return 1

    def load(self, index: int) -> tuple[np.ndarray, float]:
        x = np.random.default_rng(derive_seed(self.seed, "toy", index)).standard_normal(len(self.weights))
        return x.astype(np.float32), float(np.sin(3.0 * x @ self.weights))

    def describe(self, index: int) -> str:
        return f"toy sample {index}"


def collate(samples: list[tuple[np.ndarray, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([s[0] for s in samples]))
    y = torch.tensor([s[1] for s in samples], dtype=torch.float32)
    return x, y


class ToyTask(Task):
    config_class = ToyConfig

    def build_models(self) -> dict[str, nn.Module]:
        return {"model": ToyModel(self.options)}

    def data(self) -> tuple[ToySource, Any]:
        return ToySource(self.train.seed, self.options.dim), collate

    def loss(self, models: dict[str, nn.Module], batch: Any, ctx: StepContext) -> LossOutput:
        x, y = (t.to(ctx.device) for t in batch)
        noise = torch.randn(x.shape, generator=ctx.generator).to(ctx.device)
        pred = models["model"](x + self.options.input_noise * noise)
        loss = torch.nn.functional.mse_loss(pred.float(), y)
        if ctx.step in self.options.nan_steps:
            loss = loss * float("nan")
        return LossOutput({"main": loss}, metrics={"abs_error": float((pred.detach() - y).abs().mean())}, tokens=len(y))

    def export(self, models: dict[str, nn.Module], out_dir: Path) -> None:
        models["model"].save_pretrained(out_dir)


TASK = ToyTask
