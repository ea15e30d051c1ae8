"""Config round trips, overrides, atomic writes, save/load of models, and the CLI's contract."""

import dataclasses
import json
import os

import pytest
import torch

from kinetoscope.config import Config, apply_overrides, load_config_file
from kinetoscope.errors import CheckpointError, ConfigError
from kinetoscope.files import atomic_directory, atomic_write_text, make_private
from kinetoscope.modeling import PretrainedModel


@dataclasses.dataclass
class InnerConfig(Config):
    rate: float = 0.1
    sizes: tuple[int, int] = (4, 8)


@dataclasses.dataclass
class ToyConfig(Config):
    width: int = 8
    name: str = "toy"
    inner: InnerConfig = dataclasses.field(default_factory=InnerConfig)
    extra: str | None = None

    presets = {"big": {"width": 32}}


class Toy(PretrainedModel):
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        self.proj = torch.nn.Linear(config.width, config.width)


def test_config_json_round_trip(tmp_path):
    cfg = ToyConfig(width=16, inner=InnerConfig(rate=0.5, sizes=(1, 2)))
    cfg.save_json(tmp_path / "c.json")
    back = ToyConfig.load_json(tmp_path / "c.json")
    assert back == cfg
    assert isinstance(back.inner.sizes, tuple)
    assert ToyConfig.from_preset("big").width == 32


def test_config_rejects_unknown_and_wrong_types(tmp_path):
    with pytest.raises(ConfigError, match="no field 'wdith'"):
        ToyConfig.from_dict({"wdith": 3})
    with pytest.raises(ConfigError, match="must be int"):
        ToyConfig.from_dict({"width": "wide"})
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        ToyConfig.from_preset("huge")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ToyConfig.load_json(tmp_path / "bad.json")


def test_overrides_and_config_files(tmp_path):
    data = {"optim": {"lr": 1e-3}, "steps": 10}
    out = apply_overrides(data, ["optim.lr=3e-4", "steps=20", "name=run"])
    assert out == {"optim": {"lr": 3e-4}, "steps": 20, "name": "run"}
    assert data["steps"] == 10
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(data, ["steps"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(data, ["steps.x=1"])
    (tmp_path / "a.yaml").write_text("steps: 5\noptim:\n  lr: 0.1\n")
    (tmp_path / "a.toml").write_text("steps = 5\n[optim]\nlr = 0.1\n")
    assert load_config_file(tmp_path / "a.yaml") == load_config_file(tmp_path / "a.toml")


def test_atomic_directory_keeps_old_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as d:
        (d / "x").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as d:
            (d / "x").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (target / "x").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_what_the_library_writes_has_the_modes_of_an_ordinary_write(tmp_path, umask, file_mode, dir_mode):
    import numpy as np

    from kinetoscope.io import write_video

    def mode(path):
        return path.stat().st_mode & 0o777

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "note.txt", "hello")
        with atomic_directory(tmp_path / "model") as d:
            (d / "x").write_text("x")
        write_video(tmp_path / "clip.mp4", np.zeros((3, 16, 16, 3), np.uint8), 10.0)
    finally:
        os.umask(old)
    assert mode(tmp_path / "note.txt") == mode(tmp_path / "clip.mp4") == file_mode
    assert mode(tmp_path / "model") == dir_mode


def test_make_private_leaves_only_the_owner_in(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("secret")
    make_private(tmp_path / "a")
    modes = {p.name: p.stat().st_mode & 0o777 for p in [tmp_path / "a", *(tmp_path / "a").rglob("*")]}
    assert modes == {"a": 0o700, "b": 0o700, "f": 0o600}


def test_save_and_load_pretrained(tmp_path):
    torch.manual_seed(0)
    model = Toy(ToyConfig(width=4))
    model.save_pretrained(tmp_path / "toy")
    assert json.loads((tmp_path / "toy" / "config.json").read_text())["width"] == 4
    back = Toy.from_pretrained(tmp_path / "toy")
    assert torch.equal(back.proj.weight, model.proj.weight)
    model.save_pretrained(tmp_path / "half", dtype=torch.bfloat16)
    half = Toy.from_pretrained(tmp_path / "half")
    assert half.proj.weight.dtype == torch.float32
    torch.testing.assert_close(half.proj.weight, model.proj.weight, atol=1e-2, rtol=1e-2)


def test_load_pretrained_errors(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        Toy.from_pretrained(tmp_path)
    Toy(ToyConfig(width=4)).save_pretrained(tmp_path / "a")
    ToyConfig(width=6).save_json(tmp_path / "a" / "config.json")
    with pytest.raises(CheckpointError, match="has shape"):
        Toy.from_pretrained(tmp_path / "a")
    # A weights file that lacks some of the model's tensors loads with load_weights (they keep
    # their initialisation, for growing a model), never with from_pretrained.
    from safetensors.torch import load_file, save_file

    Toy(ToyConfig(width=4)).save_pretrained(tmp_path / "b")
    state = load_file(str(tmp_path / "b" / "model.safetensors"))
    dropped = min(state)
    save_file({k: v for k, v in state.items() if k != dropped}, str(tmp_path / "b" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="1 missing tensors"):
        Toy.from_pretrained(tmp_path / "b")
    assert Toy(ToyConfig(width=4)).load_weights(tmp_path / "b") == [dropped]


def test_cli_version_and_help(cli):
    from kinetoscope import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"kinetoscope {__version__}"
    code, out, _ = cli("--help")
    assert code == 0 and "world" in out
    code, _, _ = cli("no-such-command")
    assert code == 2


def test_a_missing_optional_dependency_names_the_extra_to_install(monkeypatch, tmp_path, cli, capsys):
    import sys

    from kinetoscope.errors import MissingExtraError
    from kinetoscope.language.openai_backend import OpenAIBackend
    from kinetoscope.safety.provenance import _c2pa
    from kinetoscope.text.hf import HFTextEncoder
    from kinetoscope.train.logging import MetricsLogger

    for module in ("uvicorn", "openai", "c2pa", "transformers", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # what an import of a missing module does
    code, _, err = cli("serve", "--model", str(tmp_path))
    assert code == 2 and err.strip() == (
        "error: kinetoscope serve needs uvicorn, which is not installed: pip install 'kinetoscope[serve]'."
    )
    for make, extra in [
        (lambda: OpenAIBackend("http://localhost:1/v1", "m"), "language"),
        (_c2pa, "safety"),
        (lambda: HFTextEncoder(tmp_path), "hf"),
    ]:
        with pytest.raises(MissingExtraError, match=rf"pip install 'kinetoscope\[{extra}\]'\.$"):
            make()
    # TensorBoard is only a second log: the run goes on, and says how to get it.
    (tmp_path / "run").mkdir()
    logger = MetricsLogger(tmp_path / "run", resume_step=0)
    logger.log(1, {"loss": 0.5})
    logger.close()
    assert "pip install 'kinetoscope[train]'" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1].startswith("1,0.5")
