import os

import pytest

os.environ.setdefault("KINETOSCOPE_PROGRESS", "0")


def pytest_configure(config):
    # Under xdist each worker gets its share of the cores instead of fighting for all of them.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: ``code, out, err = cli("world", "sample", ...)``."""
    from kinetoscope.cli import run

    def invoke(*args: str):
        code = run([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model directory (model_index.json, vae/, dit/, text/) of a tiny VAE, DiT and text encoder
    trained for a few seconds by the trainer on 32x32 world clips. Trained once per test session:
    xdist workers share it through a lock, so any test file may use it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, shared by its workers
    runs = root / "tiny_model"
    model = runs / "dit" / "final"
    with FileLock(str(root / "tiny_model.lock")):
        if not (model / "model_index.json").is_file():  # written last by the export
            from kinetoscope.train import TrainConfig, train

            world = {"scenarios": ["uniform", "bounce"], "sizes": [[32, 32]], "frames": [1, 9], "fps": 10.0}
            short = {**world, "frames": [1, 5]}  # the VAE learns from shorter clips: it is the slower part
            common = {"log_every": 1000, "checkpoint_every": 1000, "ema": {"decay": 0.0}, "schedule": {"warmup_steps": 0}}
            vae = train(TrainConfig.from_dict({
                **common, "run_dir": str(runs / "vae"), "steps": 8, "optim": {"lr": 3e-3, "weight_decay": 0.0},
                "data": {"source": "world", "world": short, "batch_size": 2},
                "task": {"kind": "vae", "preset": "tiny", "loss": {"adversarial_weight": 0.0}, "stats_batches": 2},
            }))  # fmt: skip
            train(TrainConfig.from_dict({
                **common, "run_dir": str(runs / "dit"), "steps": 30, "optim": {"lr": 2e-3, "weight_decay": 0.0},
                "data": {"source": "world", "world": world, "batch_size": 4},
                "task": {"kind": "dit", "preset": "tiny", "vae": str(vae), "text_preset": "tiny", "tokenizer_captions": 50},
            }))  # fmt: skip
    return model


#: A tiny VAE (4x spatial, 4x temporal, 4 latent channels) trained by the trainer for 300 steps on
#: 32x32 clips of the physical-law paper's scenarios. L2 rather than L1: on small balls over a
#: plain background L1 settles on the background (see VAELossConfig.l2_weight).
TRAINED_TINY_VAE = {
    "steps": 300, "log_every": 1000, "checkpoint_every": 1000, "ema": {"decay": 0.0},
    "optim": {"lr": 3e-3, "weight_decay": 0.0}, "schedule": {"kind": "constant", "warmup_steps": 10},
    "data": {
        "source": "world", "token_budget": 16384,
        "world": {"scenarios": ["uniform", "collision", "parabola"], "sizes": [[32, 32]], "frames": [1, 5, 9], "fps": 10.0},
    },
    "task": {
        "kind": "vae", "preset": "tiny", "model": {"spatial_compression": 4}, "stats_batches": 4,
        "loss": {"adversarial_weight": 0.0, "l1_weight": 0.0, "l2_weight": 1.0, "ssim_weight": 0.0},
    },
}  # fmt: skip


@pytest.fixture(scope="session")
def trained_tiny_vae(tmp_path_factory):
    """The directory of a tiny VAE that reconstructs world clips: trained once per test session
    (about two minutes), shared by xdist workers through a lock like ``tiny_model_dir``."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    run = root / "trained_tiny_vae"
    with FileLock(str(root / "trained_tiny_vae.lock")):
        if not (run / "final" / "model.safetensors").is_file():
            from kinetoscope.train import TrainConfig, train

            train(TrainConfig.from_dict({**TRAINED_TINY_VAE, "run_dir": str(run)}))
    return run / "final"
