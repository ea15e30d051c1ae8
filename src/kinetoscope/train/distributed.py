"""Process groups from torchrun's environment, and parallelism applied to a plain model from outside.

The models never know they are distributed (torchtitan's rule): DDP wraps a module, FSDP2's
``fully_shard`` is applied to its repeated blocks and then to the whole, activation
checkpointing and ``torch.compile`` are applied per block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ...); NCCL on GPUs, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    return DistInfo(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over ranks (a copy; the input is unchanged)."""
    out = values.detach().clone()
    if info.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def apply_activation_checkpointing(blocks: Sequence[nn.Module]) -> None:
    """Recompute each block's activations in backward instead of keeping them (non-reentrant)."""
    for block in blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def apply_compile(module: nn.Module, blocks: Sequence[nn.Module]) -> None:
    """Compile block by block (one graph reused for every layer), or the whole module if it has none."""
    for block in blocks or [module]:
        # Dynamic in the token count: packed batches differ in length from step to step.
        block.compile(dynamic=True)


def wrap(module: nn.Module, mode: str, blocks: Sequence[nn.Module], info: DistInfo) -> nn.Module:
    """Return ``module`` ready for data-parallel training: as is, in DDP, or sharded with FSDP2.

    FSDP2 shards in place (the returned object is ``module`` itself); DDP returns a wrapper,
    so callers keep the plain module for state dicts and exports.
    """
    if not info.distributed or mode == "none":
        return module
    if not any(p.requires_grad for p in module.parameters()):
        return module
    if mode == "ddp":
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    with torch.no_grad():  # FSDP2 shards contiguous tensors only (the VAE keeps conv weights channels-last)
        for p in module.parameters():
            if not p.is_contiguous():
                p.data = p.data.contiguous()
    for block in blocks:
        fully_shard(block)
    fully_shard(module)
    return module


@contextlib.contextmanager
def gradient_sync(modules: Sequence[nn.Module], enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on micro-batches before the last one of an accumulated step."""
    with contextlib.ExitStack() as stack:
        for m in modules:
            if isinstance(m, DistributedDataParallel) and not enabled:
                stack.enter_context(m.no_sync())
            elif hasattr(m, "set_requires_gradient_sync"):  # an FSDP2-sharded module
                m.set_requires_gradient_sync(enabled)
        yield
