"""Symmetric ``save_pretrained`` / ``from_pretrained`` for every model in kinetoscope.

A component directory holds ``config.json`` (the model's config dataclass) and
``model.safetensors``. Nothing is pickled and nothing is downloaded: a path goes in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, TypeVar

import torch
from torch import nn

from kinetoscope.config import Config
from kinetoscope.errors import CheckpointError
from kinetoscope.files import atomic_directory

M = TypeVar("M", bound="PretrainedModel")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PretrainedModel(nn.Module):
    """An ``nn.Module`` built from one config dataclass, saved and loaded as a directory."""

    config_class: ClassVar[type[Config]]

    def __init__(self, config: Config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` atomically; ``dtype`` casts float weights."""
        from safetensors.torch import save_file

        state = {}
        for name, tensor in self.state_dict().items():
            tensor = tensor.detach().to("cpu")
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[name] = tensor.contiguous()
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.config.save_json(tmp / CONFIG_NAME)
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "class": type(self).__name__})
        return directory

    @classmethod
    def from_pretrained(
        cls: type[M], directory: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> M:
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory} is not a {cls.__name__} directory: {name} is missing.")
        model = cls(cls.config_class.load_json(directory / CONFIG_NAME))
        missing = model.load_weights(directory)
        if missing:
            raise CheckpointError(
                f"{directory / WEIGHTS_NAME} does not match its config: "
                f"{len(missing)} missing tensors (e.g. {missing[:3]})."
            )
        model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
        return model.eval()

    def load_weights(self, directory: str | os.PathLike) -> list[str]:
        """Load the weights of a saved model directory into this model; return the names it lacks.

        Those keep their initialisation: this is how a model grown by new parts (built to start
        as no-ops) is fine-tuned from a smaller saved one. Tensors this model has no place for,
        or whose shapes differ, are an error. Weights stored in bf16/fp16 load in the model's dtype.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS_NAME
        if not path.is_file():
            raise CheckpointError(f"{directory} is not a {type(self).__name__} directory: {WEIGHTS_NAME} is missing.")
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{path} could not be read: {e}.") from None
        own = self.state_dict()
        unexpected = sorted(set(state) - set(own))
        if unexpected:
            raise CheckpointError(
                f"{path} does not match this {type(self).__name__}: {len(unexpected)} tensors it has no place for "
                f"(e.g. {unexpected[:3]})."
            )
        for name, tensor in state.items():
            if tensor.shape != own[name].shape:
                raise CheckpointError(
                    f"{path}: tensor {name} has shape {tuple(tensor.shape)}, the config expects {tuple(own[name].shape)}."
                )
            state[name] = tensor.to(own[name].dtype)
        self.load_state_dict(state, strict=False)
        return sorted(set(own) - set(state))
