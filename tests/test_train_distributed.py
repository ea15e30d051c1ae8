"""Two gloo processes (DDP and FSDP2) train like one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from test_train import losses, toy_config, write_config

from kinetoscope.train import TrainConfig, train
from kinetoscope.train.checkpoint import load_tensors

STEPS = 4


def launch_two_ranks(config_path) -> subprocess.Popen:
    env = {**os.environ, "KINETOSCOPE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "kinetoscope.cli",
            "train",
            "toy",
            "--config",
            str(config_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_ddp_and_fsdp2_on_two_processes_match_one_process(tmp_path):
    # No dropout or input noise: those draw per-rank random numbers, which 1 process cannot share.
    # fp32: on a CPU with bf16 units auto means bf16, whose rounding follows each rank's half batch.
    common = {
        "steps": STEPS, "checkpoint_every": STEPS, "precision": "fp32",
        "task.dropout": 0.0, "task.input_noise": 0.0, "task.depth": 3,
    }
    runs = {}
    for mode in ("ddp", "fsdp"):
        cfg = toy_config(tmp_path / mode, parallel=mode, **common, **{"data.batch_size": 4})
        runs[mode] = launch_two_ranks(write_config(tmp_path / f"{mode}.yaml", cfg))
    # One process reads both ranks' samples: global batch 8 = 2 ranks x 4.
    train(TrainConfig.from_dict(toy_config(tmp_path / "single", **common, **{"data.batch_size": 8})))
    for mode, proc in runs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{mode}:\n{out}"

    expected = {s: float(v) for s, v in losses(tmp_path / "single").items()}
    single_weights = load_tensors(tmp_path / "single" / "final", "model")
    for mode in ("ddp", "fsdp"):
        got = {s: float(v) for s, v in losses(tmp_path / mode).items()}
        assert sorted(got) == list(range(1, STEPS + 1))
        for step, value in got.items():
            assert value == pytest.approx(expected[step], rel=1e-5, abs=1e-7), (mode, step)
        weights = load_tensors(tmp_path / mode / "final", "model")
        for name, tensor in single_weights.items():
            torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-6, msg=f"{mode}: {name}")
    # The losses moved, so equality is not the trivial equality of an untrained model.
    assert len(set(expected.values())) == STEPS
