"""Exact resumption: SIGKILL at a random step then resume repeats every loss; a kill mid-save keeps the last checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import losses, toy_config, write_config

from kinetoscope.train import TrainConfig, train
from kinetoscope.train.checkpoint import SAVE_DELAY_ENV, list_checkpoints, load_tensors
from kinetoscope.train.logging import read_metrics


def cli_process(config: Path, env_extra: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "KINETOSCOPE_PROGRESS": "0", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "kinetoscope.cli", "train", "toy", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the kill point: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


def last_logged_step(run_dir: Path) -> int:
    try:
        rows = read_metrics(run_dir)
    except (FileNotFoundError, KeyError):
        return 0
    return int(rows[-1]["step"]) if rows else 0


def test_sigkill_at_random_step_then_resume_repeats_every_loss(tmp_path):
    steps = 30
    changes = {"steps": steps, "data.num_workers": 1, "checkpoint_every": 5}
    ref_cfg = write_config(tmp_path / "ref.yaml", toy_config(tmp_path / "ref", **changes))
    run_cfg = write_config(tmp_path / "run.yaml", toy_config(tmp_path / "run", **changes))
    reference = cli_process(ref_cfg)
    victim = cli_process(run_cfg)
    kill_at = random.Random().randint(6, steps - 15)  # after a checkpoint, well before the end
    wait_for(lambda: last_logged_step(tmp_path / "run") >= kill_at, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = last_logged_step(tmp_path / "run")
    assert killed_at < steps, "the run must be killed before it finishes"
    checkpoint_step = list_checkpoints(tmp_path / "run")[-1][0]
    assert 5 <= checkpoint_step <= killed_at

    resumed = cli_process(run_cfg)  # same command: resumes from the run directory by itself
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    assert reference.wait(timeout=120) == 0, reference.stderr.read()
    expected, got = losses(tmp_path / "ref"), losses(tmp_path / "run")
    assert sorted(got) == list(range(1, steps + 1))
    assert got == expected, f"killed at step {killed_at}, resumed from {checkpoint_step}"
    final_ref = load_tensors(tmp_path / "ref" / "final", "model")
    final_run = load_tensors(tmp_path / "run" / "final", "model")
    assert all(torch.equal(final_ref[k], final_run[k]) for k in final_ref)


def test_kill_during_checkpoint_save_leaves_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig.from_dict(toy_config(run, steps=4)))
    before = load_tensors(list_checkpoints(run)[-1][1], "model")
    config = write_config(tmp_path / "c.yaml", toy_config(run, steps=8))
    proc = cli_process(config, {SAVE_DELAY_ENV: "60"})
    partial = run / "checkpoints" / ".step_00000008.tmp"
    wait_for(lambda: (partial / "model.safetensors").is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert partial.is_dir(), "the kill must land while the checkpoint is being written"
    assert [s for s, _ in list_checkpoints(run)] == [4]
    assert all(
        torch.equal(before[k], v) for k, v in load_tensors(run / "checkpoints" / "step_00000004", "model").items()
    )
    # The next run removes the partial directory, resumes from step 4 and finishes.
    train(TrainConfig.from_dict(toy_config(run, steps=8)))
    assert [s for s, _ in list_checkpoints(run)] == [4, 8]
    assert not partial.exists()
    assert sorted(losses(run)) == list(range(1, 9))


def test_sigterm_stops_at_a_step_boundary_with_a_checkpoint_and_the_same_command_goes_on(tmp_path):
    import json

    steps = 100_000  # far more than it runs before the signal
    config = write_config(tmp_path / "run.yaml", toy_config(tmp_path / "run", steps=steps, checkpoint_every=10_000))
    proc = cli_process(config)
    wait_for(lambda: last_logged_step(tmp_path / "run") >= 5, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert "asked to (SIGTERM)" in proc.stderr.read()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    done = summary["steps_done"]
    assert summary["stopped_by"] == "signal" and 5 <= done < steps
    assert list_checkpoints(tmp_path / "run")[-1][0] == done  # saved at the step it stopped on
    assert sorted(losses(tmp_path / "run")) == list(range(1, done + 1))
    assert summary["cpu_seconds"] == pytest.approx(summary["train_seconds"] * summary["threads"], rel=0.01)

    more = toy_config(tmp_path / "run", steps=done + 3, checkpoint_every=10_000)
    resumed = cli_process(write_config(tmp_path / "more.yaml", more))
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    assert sorted(losses(tmp_path / "run")) == list(range(1, done + 4))
