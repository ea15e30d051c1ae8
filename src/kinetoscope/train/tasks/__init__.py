"""Training plug-ins, one module each: ``tasks/<kind>.py`` defines ``TASK``, a :class:`Task` subclass.

Adding a model to the trainer is adding one file here; nothing else lists the tasks.
"""

from __future__ import annotations

import importlib
import pkgutil

from kinetoscope.errors import ConfigError
from kinetoscope.train.tasks.base import LossOutput, OptimizerSpec, StepContext, Task

__all__ = ["LossOutput", "OptimizerSpec", "StepContext", "Task", "available_tasks", "task_class"]


def available_tasks() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def task_class(kind: str) -> type[Task]:
    name = f"{__name__}.{kind}"
    if kind == "base" or not kind.isidentifier():
        raise ConfigError(f"Unknown training task {kind!r}; choose one of {', '.join(available_tasks())}.")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        raise ConfigError(f"Unknown training task {kind!r}; choose one of {', '.join(available_tasks())}.") from None
    return module.TASK
