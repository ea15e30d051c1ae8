"""Where a run reports: ``metrics.csv``, TensorBoard events (when installed) and the skipped-files list.

Only rank 0 writes metrics. A resumed run first drops the rows logged after its checkpoint
(they will be logged again), so the CSV always reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

from kinetoscope.errors import MissingExtraError, require
from kinetoscope.files import atomic_write_text

METRICS_CSV = "metrics.csv"
SKIPPED_FILES = "skipped_files.tsv"
TENSORBOARD_DIR = "tensorboard"


class MetricsLogger:
    """Append one row per logged step; the first row fixes the columns."""

    def __init__(self, run_dir: Path, resume_step: int, tensorboard: bool = True):
        self.path = run_dir / METRICS_CSV
        self.columns: list[str] | None = None
        self._truncate_after(resume_step)
        self.writer = _tensorboard_writer(run_dir / TENSORBOARD_DIR, resume_step) if tensorboard else None

    def _truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
            columns = list(rows[0]) if rows else None
        kept = [r for r in rows if int(r["step"]) <= step]
        if not kept:
            self.path.unlink()
            return
        self.columns = columns
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, out.getvalue())

    def log(self, step: int, values: dict[str, Any]) -> None:
        row = {"step": step, **values}
        new_file = self.columns is None
        if new_file:
            self.columns = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(directory: Path, resume_step: int) -> Any:
    try:
        SummaryWriter = require("torch.utils.tensorboard", "Logging to TensorBoard").SummaryWriter
    except MissingExtraError as e:  # an optional extra: the run goes on with metrics.csv alone
        print(f"note: {e} Training goes on; metrics.csv has every figure.", file=sys.stderr)
        return None
    # purge_step drops events a killed run wrote after its last checkpoint.
    return SummaryWriter(str(directory), purge_step=resume_step + 1 if resume_step else None)


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv`` (strings, as written)."""
    with (Path(run_dir) / METRICS_CSV).open(newline="") as f:
        return list(csv.DictReader(f))


class SkippedFiles:
    """Samples that could not be read: counted, and each listed once in ``skipped_files.tsv``."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / SKIPPED_FILES
        self.seen: set[str] = set()
        if self.path.is_file():
            self.seen = {line.split("\t", 1)[0] for line in self.path.read_text().splitlines() if line}
        self.count = 0

    def record(self, items: list[tuple[str, str]]) -> None:
        self.count += len(items)
        new = [(what, why) for what, why in items if what not in self.seen]
        if not new:
            return
        self.seen.update(what for what, _ in new)
        # One small append per batch; O_APPEND keeps lines from several ranks whole.
        with self.path.open("a") as f:
            f.write("".join(f"{what}\t{' '.join(why.split())}\n" for what, why in new))


def read_skipped(run_dir: str | Path) -> list[str]:
    """Paths (or sample names) listed as skipped in a run directory."""
    path = Path(run_dir) / SKIPPED_FILES
    return [line.split("\t", 1)[0] for line in path.read_text().splitlines() if line] if path.is_file() else []


class LogWindow:
    """What happened between two log lines."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.steps = 0
        self.samples = 0
        self.tokens = 0
        self.losses: dict[str, list[float]] = {}
        self.metrics: dict[str, list[float]] = {}
        self.last_norm: dict[str, float] = {}

    def add(self, stats: dict[str, Any]) -> None:
        self.steps += 1
        self.samples += stats["samples"]
        self.tokens += stats["tokens"]
        if stats["finite"]:
            for k, v in stats["losses"].items():
                self.losses.setdefault(k, []).append(v)
            for k, v in stats["metrics"].items():
                self.metrics.setdefault(k, []).append(v)
            self.last_norm = stats["norms"]

    def mean_loss(self, name: str) -> float:
        """Mean over the steps that computed it (nan if none did: all skipped, or not active yet)."""
        values = self.losses.get(name)
        return math.fsum(values) / len(values) if values else math.nan

    def mean_metric(self, name: str) -> float:
        return math.fsum(self.metrics[name]) / len(self.metrics[name])
