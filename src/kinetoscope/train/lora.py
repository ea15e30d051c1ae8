"""LoRA as a weight parametrization: ``W + (alpha / r) * B @ A`` wherever the weight is read.

Why not peft: peft swaps each target ``nn.Linear`` for a wrapper whose ``forward`` adds the
low-rank path, but the transformer's fused kernels (norm + modulation + linear in one op) read
``linear.weight`` directly and never call that ``forward``, so peft's adapters on the QKV and
feed-forward layers would silently never train. A parametrization (``torch.nn.utils.parametrize``)
changes what ``.weight`` *is*, so every way of using the layer sees the adapted weight.
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch
from torch import nn
from torch.nn.utils import parametrize

from kinetoscope.config import Config
from kinetoscope.errors import ConfigError


@dataclasses.dataclass
class LoRAConfig(Config):
    #: Adapter rank; 0 means full fine-tuning (no adapters).
    rank: int = 0
    alpha: float = 16.0
    #: Regular expression over module names: the ``nn.Linear`` layers that get adapters.
    target: str = r"blocks\.\d+\..*(qkv|out|ffn\.0|ffn\.2|q|kv)$"


class LowRankDelta(nn.Module):
    """The parametrization: ``weight -> weight + scale * B @ A``; B starts at zero, so training starts from W."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A).to(weight.dtype)


def apply_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze ``model`` and add trainable adapters to the matching linear layers; return their names."""
    pattern = re.compile(config.target)
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and pattern.search(name)]
    if not targets:
        raise ConfigError(f"LoRA target {config.target!r} matches no linear layer of the model.")
    model.requires_grad_(False)
    for _, linear in targets:
        delta = LowRankDelta(linear.out_features, linear.in_features, config.rank, config.alpha)
        parametrize.register_parametrization(linear, "weight", delta.to(linear.weight.device))
    return [name for name, _ in targets]


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (in place): the model is a plain one again, same keys as before."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters alone (``...parametrizations.weight.0.lora_A/B``): what a LoRA fine-tune adds."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if ".lora_A" in k or ".lora_B" in k}
