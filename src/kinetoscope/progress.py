"""One progress bar for all long work: count, rate, elapsed, ETA and live fields (loss, ...)."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

T = TypeVar("T")


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        return Text(f"{speed:.3g} {self.unit}/s", style="progress.data.speed")


def _enabled() -> bool:
    return os.environ.get("KINETOSCOPE_PROGRESS", "1") != "0"


class ProgressBar:
    """``with ProgressBar(total, "sampling", unit="step") as bar: bar.advance(loss=0.1)``."""

    def __init__(self, total: int | None, description: str, unit: str = "it", disable: bool | None = None):
        self.disable = (not _enabled()) if disable is None else disable
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=sys.stderr),
            disable=self.disable,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, info="")

    def __enter__(self) -> "ProgressBar":
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def advance(self, n: int = 1, **fields: Any) -> None:
        info = "  ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
        self._progress.update(self._task, advance=n, info=info)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def track(iterable: Iterable[T], total: int | None = None, description: str = "working", unit: str = "it") -> Iterator[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with ProgressBar(total, description, unit) as bar:
        for item in iterable:
            yield item
            bar.advance()
