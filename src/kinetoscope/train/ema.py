"""Exponential moving average of a module's trainable weights (sharded like the weights under FSDP2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from kinetoscope.errors import CheckpointError


class EMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer step, in one foreach op."""

    def __init__(self, modules: dict[str, nn.Module], decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.params = {
            f"{name}.{pname}": p
            for name, module in modules.items()
            for pname, p in module.named_parameters()
            if p.requires_grad
        }
        self.shadow = {k: p.detach().clone() for k, p in self.params.items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        names = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[k] for k in names], [self.params[k].detach() for k in names], 1.0 - self.decay_at(step)
        )

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Unsharded CPU copies keyed ``module.param`` (collective under FSDP2: every rank calls it)."""
        return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu() for k, v in self.shadow.items()}

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise CheckpointError(
                f"The checkpoint's EMA lacks {len(missing)} weights of this model (e.g. {missing[:3]})."
            )
        for k, v in self.shadow.items():
            full = state[k].to(device=v.device, dtype=v.dtype)
            if isinstance(v, DTensor):
                full = distribute_tensor(full, v.device_mesh, v.placements)
            v.copy_(full)
