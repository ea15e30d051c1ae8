"""Every training task under ``precision: bf16`` on the CPU (the autocast path CUDA takes): a few
steps through the trainer track the same steps in fp32.

Same seed, same batches: the losses differ only by bf16's rounding in the forward and backward
passes, which compounds over the steps through the weights. The bound (5% per step) is several
times what the tasks reach and far below what a wrong cast, an fp32-only op or a gradient lost
under autocast would give (those fail outright or move the loss by tens of percent).
"""

from __future__ import annotations

import pytest
import torch

from kinetoscope.train import TrainConfig, train
from kinetoscope.train.logging import read_metrics

WORLD = {"scenarios": ["uniform", "static"], "sizes": [[32, 32]], "frames": [5], "fps": 10.0}
COMMON = {"steps": 4, "log_every": 1, "checkpoint_every": 100, "ema": {"decay": 0.0}, "schedule": {"warmup_steps": 0}}


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    from kinetoscope.vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vae") / "vae"
    CausalVAE(VAEConfig.from_preset("tiny")).save_pretrained(path)
    return path


def _task_configs(vae_dir) -> dict[str, dict]:
    return {
        "vae": {
            "data": {"source": "world", "world": WORLD, "batch_size": 2},
            "task": {"kind": "vae", "preset": "tiny", "loss": {"adversarial_weight": 0.0}, "stats_batches": 1},
        },
        "dit": {  # the transformer and the built-in text encoder train together
            "data": {"source": "world", "world": WORLD, "batch_size": 4},
            "task": {"kind": "dit", "preset": "tiny", "vae": str(vae_dir), "text_preset": "tiny", "tokenizer_captions": 50},
        },
        "captioner": {
            "data": {"source": "world", "world": WORLD, "batch_size": 4},
            "task": {
                "kind": "captioner", "tokenizer_vocab": 256, "tokenizer_captions": 100, "sample_clips": 0,
                "model": {"image_size": 32, "patch": 8, "tubelet": 5, "frames": 5, "stem_channels": 16, "dim": 32,
                          "heads": 2, "encoder_layers": 1, "decoder_layers": 1},
            },
        },
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["vae", "dit", "captioner"])
def test_a_few_bf16_steps_of_each_task_track_fp32(kind, vae_dir, tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        cfg = {**COMMON, **_task_configs(vae_dir)[kind], "run_dir": str(run), "precision": precision}
        train(TrainConfig.from_dict(cfg))
        losses[precision] = torch.tensor([float(row["loss"]) for row in read_metrics(run)])
    fp32, bf16 = losses["fp32"], losses["bf16"]
    assert len(fp32) == len(bf16) == COMMON["steps"] and torch.isfinite(bf16).all()
    relative = ((bf16 - fp32).abs() / fp32.abs()).max().item()
    assert relative < 0.05, (kind, fp32.tolist(), bf16.tolist())
    assert not torch.equal(fp32, bf16)  # bf16 really ran: its rounding shows in the losses
