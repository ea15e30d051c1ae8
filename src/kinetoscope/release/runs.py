"""The training runs behind a bundle: found from the exports, read from their run directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


from kinetoscope.errors import CheckpointError
from kinetoscope.files import atomic_write_json


# ---------------------------------------------------------------- runs and pictures
def infer_runs(model: Path, captioner: Path | None, vae: Path | None = None) -> list[Path]:
    """The run directories behind the given exports: ``RUN/final`` -> ``RUN``, the runs of the VAE
    (the DiT run's, or ``vae``'s and the runs it was trained on from), and the captioner's."""
    candidates = [model.parent]
    vae_export = vae or _task_option(model.parent, "vae")
    while vae_export is not None and Path(vae_export).parent not in candidates:
        candidates.insert(0, Path(vae_export).parent)
        vae_export = _task_option(Path(vae_export).parent, "init_from")
    if captioner is not None:
        candidates.append(captioner.parent)
    return [c for c in dict.fromkeys(candidates) if (c / "config.json").is_file()]


def _task_option(run_dir: Path, name: str) -> str | None:
    config = run_dir / "config.json"
    return json.loads(config.read_text()).get("task", {}).get(name) if config.is_file() else None


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's config, metrics rows and (when the trainer wrote one) its summary."""
    from kinetoscope.train.logging import METRICS_CSV, read_metrics

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a training run directory: config.json is missing.", param="run")
    config = json.loads(config_path.read_text())
    rows = read_metrics(run_dir) if (run_dir / METRICS_CSV).is_file() else []
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return {"name": config["task"]["kind"], "dir": run_dir, "config": config, "rows": rows, "summary": summary}


def wall_seconds(run: dict[str, Any]) -> tuple[float | None, str]:
    """Training wall time: the trainer's summary, else estimated from the logged step rates."""
    if run["summary"] is not None:
        return float(run["summary"]["train_seconds"]), "measured"
    seconds, previous = 0.0, 0
    for row in run["rows"]:
        step, rate = int(row["step"]), float(row["steps_per_s"])
        seconds += (step - previous) / rate if rate > 0 else 0.0
        previous = step
    return (seconds, "estimated from metrics.csv") if run["rows"] else (None, "not recorded")


def copy_run_configs(runs: list[dict[str, Any]], directory: Path) -> dict[str, Path]:
    """Each run's resolved config, so the retrain commands name files that ship with the model."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for run in runs:
        path = directory / f"{run['label']}.json"
        atomic_write_json(path, run["config"])
        out[run["label"]] = path
    return out
