"""The training loop: config, schedule, checkpoints, NaN handling, activation checkpointing, LoRA, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from kinetoscope.errors import ConfigError
from kinetoscope.train import TrainConfig, load_train_config, train
from kinetoscope.train.checkpoint import list_checkpoints, load_tensors
from kinetoscope.train.config import ScheduleConfig
from kinetoscope.train.logging import read_metrics


def toy_config(run_dir: Path, **changes) -> dict:
    cfg = {
        "run_dir": str(run_dir),
        "seed": 3,
        "steps": 12,
        "log_every": 1,
        "checkpoint_every": 4,
        "keep_last": 2,
        "grad_accum": 2,
        "schedule": {"kind": "cosine", "warmup_steps": 3},
        "ema": {"decay": 0.9},
        "data": {"batch_size": 4},
        "task": {"kind": "toy", "dim": 6, "hidden": 16, "dropout": 0.2},
    }
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run_dir: Path) -> dict[int, str]:
    """Step -> loss exactly as written (compared as strings: equal means bit-equal)."""
    return {int(r["step"]): r["loss"] for r in read_metrics(run_dir)}


# ---------------------------------------------------------------- config and schedule
def test_config_file_overrides_and_errors(tmp_path):
    path = write_config(tmp_path / "c.yaml", toy_config(tmp_path / "run"))
    cfg = load_train_config("toy", path, ["optim.lr=1e-3", "data.world.fps=5", "task.dim=4"])
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.data.world.fps == 5.0 and cfg.task["dim"] == 4 and cfg.task_kind == "toy"
    assert cfg.grad_accum == 2 and cfg.schedule.warmup_steps == 3
    with pytest.raises(ConfigError, match="is for task 'toy', not 'vae'"):
        load_train_config("vae", path)
    with pytest.raises(ConfigError, match="parallel must be one of none, ddp, fsdp"):
        load_train_config("toy", path, ["parallel=zero"])
    with pytest.raises(ConfigError, match="no field 'stpes'"):
        load_train_config("toy", path, ["stpes=3"])
    toml = tmp_path / "c.toml"
    toml.write_text('steps = 7\n[task]\nkind = "toy"\n[optim]\nlr = 0.01\n')
    assert load_train_config("toy", toml).steps == 7


def test_unknown_task_and_bad_task_option(tmp_path):
    with pytest.raises(ConfigError, match="Unknown training task 'gan'"):
        train(TrainConfig.from_dict({"run_dir": str(tmp_path), "data": {"batch_size": 2}, "task": {"kind": "gan"}}))
    with pytest.raises(ConfigError, match="Set data.token_budget"):
        train(TrainConfig(run_dir=str(tmp_path), task={"kind": "toy"}))
    with pytest.raises(ConfigError, match="no field 'widht'"):
        train(
            TrainConfig.from_dict(
                {"run_dir": str(tmp_path), "data": {"batch_size": 2}, "task": {"kind": "toy", "widht": 3}}
            )
        )


def test_lr_schedule_warmup_cosine_constant():
    cos = ScheduleConfig(kind="cosine", warmup_steps=4, min_lr_ratio=0.1)
    assert [cos.factor(s, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cos.factor(54, 104) == pytest.approx(0.55)  # half-way through the decay
    assert cos.factor(104, 104) == pytest.approx(0.1)
    const = ScheduleConfig(kind="constant", warmup_steps=2)
    assert [const.factor(s, 10) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    wsd = ScheduleConfig(kind="cosine", warmup_steps=2, min_lr_ratio=0.1, decay_steps=100)
    assert [wsd.factor(s, 1000) for s in (0, 1, 500, 900)] == [0.5, 1.0, 1.0, 1.0]
    assert wsd.factor(950, 1000) == pytest.approx(0.55) and wsd.factor(1000, 1000) == pytest.approx(0.1)


def test_keep_last_prunes_old_checkpoints_and_finished_run_only_exports(tmp_path):
    run = tmp_path / "run"
    final = train(TrainConfig.from_dict(toy_config(run, steps=10, checkpoint_every=2, keep_last=2)))
    assert [s for s, _ in list_checkpoints(run)] == [8, 10]
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert logged == pytest.approx({s: float(v) for s, v in losses(run).items()})
    stamp = (run / "metrics.csv").read_text()
    train(TrainConfig.from_dict(toy_config(run, steps=10, checkpoint_every=2, keep_last=2)))
    assert (run / "metrics.csv").read_text() == stamp  # nothing re-run


def test_activation_checkpointing_changes_memory_not_results(tmp_path):
    # Dropout is on: recomputed blocks must redraw the same masks (checkpoint restores the RNG).
    plain = toy_config(tmp_path / "plain", steps=3, checkpoint_every=3)
    checkpointed = toy_config(tmp_path / "ac", steps=3, checkpoint_every=3, activation_checkpointing=True)
    train(TrainConfig.from_dict(plain))
    train(TrainConfig.from_dict(checkpointed))
    assert losses(tmp_path / "ac") == losses(tmp_path / "plain")


# ---------------------------------------------------------------- non-finite losses
def test_nan_step_is_skipped_and_counted(tmp_path):
    run = tmp_path / "run"
    train(TrainConfig.from_dict(toy_config(run, steps=6, checkpoint_every=1, keep_last=10, **{"task.nan_steps": [3]})))
    rows = {int(r["step"]): r for r in read_metrics(run)}
    assert [int(rows[s]["nan_skipped"]) for s in range(1, 7)] == [0, 0, 0, 1, 1, 1]
    before = load_tensors(run / "checkpoints" / "step_00000003", "model")
    after = load_tensors(run / "checkpoints" / "step_00000004", "model")  # step index 3 was skipped
    assert all(torch.equal(before[k], after[k]) for k in before)
    ema_before = load_tensors(run / "checkpoints" / "step_00000003", "ema")
    ema_after = load_tensors(run / "checkpoints" / "step_00000004", "ema")
    assert all(torch.equal(ema_before[k], ema_after[k]) for k in ema_before)
    later = load_tensors(run / "checkpoints" / "step_00000005", "model")
    assert not all(torch.equal(after[k], later[k]) for k in after)  # training went on


def test_nan_streak_stops_with_one_sentence_and_keeps_last_good_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    cfg = toy_config(run, steps=20, checkpoint_every=2, max_nan_streak=2, **{"task.nan_steps": list(range(4, 20))})
    code, _, err = cli("train", "toy", "--config", write_config(tmp_path / "c.yaml", cfg))
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "Stopped at step 7" in err and "max_nan_streak=2" in err
    # Steps 5 and 6 changed nothing, so checkpoint 6 still holds the weights of step 4.
    assert [s for s, _ in list_checkpoints(run)] == [4, 6]
    good = load_tensors(run / "checkpoints" / "step_00000004", "model")
    last = load_tensors(run / "checkpoints" / "step_00000006", "model")
    assert all(torch.equal(good[k], last[k]) for k in good)


# ---------------------------------------------------------------- LoRA
def test_lora_adapts_weights_read_directly_and_merges_back():
    from kinetoscope.train.lora import LoRAConfig, apply_lora, lora_state_dict, merge_lora

    class Fused(torch.nn.Module):  # reads .weight directly, as the transformer's fused kernels do
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.ModuleDict({"qkv": torch.nn.Linear(6, 6)})])
            self.head = torch.nn.Linear(6, 2)

        def forward(self, x):
            layer = self.blocks[0]["qkv"]
            return self.head(torch.nn.functional.linear(x, layer.weight, layer.bias))

    torch.manual_seed(0)
    model, x = Fused(), torch.randn(4, 6)
    before = model(x).detach()
    names = apply_lora(model, LoRAConfig(rank=2, alpha=4.0, target=r"blocks\.\d+\.qkv$"))
    assert names == ["blocks.0.qkv"]
    assert torch.equal(model(x), before)  # B starts at zero
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "blocks.0.qkv.parametrizations.weight.0.lora_A",
        "blocks.0.qkv.parametrizations.weight.0.lora_B",
    }
    model(x).square().sum().backward()
    assert model.blocks[0]["qkv"].parametrizations.weight[0].lora_B.grad.abs().sum() > 0
    torch.nn.init.normal_(model.blocks[0]["qkv"].parametrizations.weight[0].lora_B)
    adapted = model(x).detach()
    assert not torch.allclose(adapted, before) and len(lora_state_dict(model)) == 2
    merge_lora(model)
    assert set(model.state_dict()) == {"blocks.0.qkv.weight", "blocks.0.qkv.bias", "head.weight", "head.bias"}
    torch.testing.assert_close(model(x), adapted)
    with pytest.raises(ConfigError, match="matches no linear layer"):
        apply_lora(Fused(), LoRAConfig(rank=2, target="nothing"))


def test_every_shipped_config_is_valid():
    from kinetoscope.train.tasks import task_class

    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    for name in ("vae-tiny", "dit-tiny", "vae-world", "dit-s", "dit-b", "dit-1.3b", "dit-finetune-lora"):
        assert name in names
    for name in names:
        kind = name.split("-")[0]
        cfg = load_train_config(kind, root / f"{name}.yaml")
        task_class(kind).config_class.from_dict(cfg.task_options)


# ---------------------------------------------------------------- time limit
def test_time_limit_stops_early_exports_checkpoints_and_resumes(tmp_path, cli):
    import json

    from kinetoscope.train.tasks.toy import ToyModel

    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.yaml", toy_config(run, steps=12, checkpoint_every=5, log_every=5))
    # A budget spent by the end of the first step: the run stops there.
    code, _, err = cli("train", "toy", "--config", cfg, "--set", "time_limit_minutes=1e-6")
    assert code == 0, err
    assert "Stopped at step 1 of 12: the time limit of 1e-06 minutes is spent" in err
    assert [s for s, _ in list_checkpoints(run)] == [1]
    assert list(losses(run)) == [1]  # the stop step is logged even off the log_every grid
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "time_limit" and summary["steps_done"] == 1 and summary["steps"] == 12
    assert summary["device"] == "1 x cpu" and summary["train_seconds"] > 0
    # The export holds exactly the checkpointed weights (EMA, as at a last step).
    final = ToyModel.from_pretrained(run / "final")
    ema = load_tensors(run / "checkpoints" / "step_00000001", "ema")
    assert all(torch.equal(v, ema[f"model.{k}"]) for k, v in final.state_dict().items())
    # The same command without a limit goes on from step 1 to the end.
    code, _, err = cli("train", "toy", "--config", cfg)
    assert code == 0 and "Stopped" not in err
    assert [s for s, _ in list_checkpoints(run)] == [10, 12]
    assert list(losses(run)) == [1, 5, 10, 12]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "steps" and summary["started_at_step"] == 1 and summary["steps_done"] == 12
    # ... exactly as a run never stopped does.
    train(TrainConfig.from_dict(toy_config(tmp_path / "ref", steps=12, checkpoint_every=5, log_every=5)))
    ref = load_tensors(tmp_path / "ref" / "checkpoints" / "step_00000012", "model")
    resumed = load_tensors(run / "checkpoints" / "step_00000012", "model")
    assert all(torch.equal(ref[k], resumed[k]) for k in ref)
    with pytest.raises(ConfigError, match="time_limit_minutes must be above 0"):
        load_train_config("toy", cfg, ["time_limit_minutes=0"])


def test_a_shipped_config_is_addressed_by_name_from_any_folder(tmp_path, monkeypatch):
    from kinetoscope.train.config import CONFIGS

    monkeypatch.chdir(tmp_path)  # no configs/ here
    by_name = load_train_config("dit", "dit-tiny", ["steps=7"])
    assert by_name.steps == 7 and by_name.task["preset"] == "tiny"
    assert load_train_config("dit", "dit-tiny.yaml").to_dict() == load_train_config("dit", CONFIGS / "dit-tiny.yaml").to_dict()
    with pytest.raises(ConfigError, match=r"no shipped config has that name \(one of: .*dit-cpu.*vae-tiny"):
        load_train_config("dit", "dit-huge")
