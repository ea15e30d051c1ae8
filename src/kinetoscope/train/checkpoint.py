"""Training checkpoints: one directory per step, written whole or not at all.

``run_dir/checkpoints/step_00000100/`` holds the trainable modules and their EMA
(safetensors), each optimizer's full state (``torch.save`` of tensors and numbers only,
read back with ``weights_only=True``), ``trainer.json`` (step, schedules, counters) and one
``rank_XXXXX.pt`` per rank (its RNG states and data position). Every rank writes into a hidden
temporary directory that rank 0 renames into place once all files are there, so a process
killed mid-save leaves the previous checkpoint as the latest complete one. The latest is
found by listing, never through a link that could dangle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from kinetoscope.errors import CheckpointError
from kinetoscope.files import atomic_write_json
from kinetoscope.train.distributed import DistInfo, barrier

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
#: Test hook: seconds to sleep half-way through writing a checkpoint (to kill a run mid-save).
SAVE_DELAY_ENV = "KINETOSCOPE_CHECKPOINT_SAVE_DELAY"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first (temporary directories are hidden and skipped)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory itself, or the latest checkpoint of a run directory."""
    path = Path(path)
    if (path / TRAINER_STATE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path} is neither a checkpoint nor a run directory with checkpoints.")
    return latest


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete temporary directories left by a run killed while saving."""
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for child in root.glob(".step_*.tmp"):
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    run_dir: Path,
    step: int,
    info: DistInfo,
    *,
    tensors: dict[str, dict[str, torch.Tensor]],
    objects: dict[str, Any],
    trainer_state: dict[str, Any],
    rank_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write one checkpoint (collectively: every rank calls this) and prune to the last ``keep_last``.

    ``tensors`` maps a file stem to a flat state dict (safetensors); ``objects`` maps a file
    stem to a nested structure of tensors and numbers (torch.save). Both are written by rank 0
    only; ``rank_state`` is written by every rank. ``trainer.json`` is written last.
    """
    from safetensors.torch import save_file

    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".{final.name}.tmp")
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    torch.save(rank_state, tmp / f"rank_{info.rank:05d}.pt")
    if info.is_main:
        for stem, state in tensors.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / f"{stem}.safetensors"))
        delay = float(os.environ.get(SAVE_DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        for stem, obj in objects.items():
            torch.save(obj, tmp / f"{stem}.pt")
    barrier(info)
    if info.is_main:
        atomic_write_json(tmp / TRAINER_STATE, {**trainer_state, "step": step, "world_size": info.world_size})
        _fsync_dir(tmp)
        stale = final.with_name(f".{final.name}.old.tmp")
        if final.exists():  # a run resumed from an older checkpoint is redoing this step
            os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
        _fsync_dir(final.parent)
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_trainer_state(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / TRAINER_STATE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{directory / TRAINER_STATE} could not be read: {e}.") from None


def load_tensors(directory: Path, stem: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / f"{stem}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {directory} has no {path.name}; it was saved by a different task or config.")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} could not be read: {e}.") from None


def load_object(directory: Path, stem: str) -> Any:
    path = directory / f"{stem}.pt"
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {directory} has no {path.name}; it was saved by a different task or config.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch.load raises many unrelated types for a damaged file
        raise CheckpointError(f"{path} could not be read: {e}.") from None


def load_rank_state(directory: Path, rank: int) -> dict[str, Any] | None:
    """This rank's RNG and data state, or None when the checkpoint was saved by fewer ranks."""
    path = directory / f"rank_{rank:05d}.pt"
    return load_object(directory, path.stem) if path.is_file() else None
