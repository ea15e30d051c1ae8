"""The package works wherever it is installed: a wheel built from the source, installed into a
fresh virtual environment, generates and captions from an empty folder with its bundled models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"KINETOSCOPE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_the_wheel_ships_its_models_and_configs_and_runs_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("kinetoscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "kinetoscope/models/world/model_index.json", "kinetoscope/models/world/dit/model.safetensors",
        "kinetoscope/models/world/vae/model.safetensors", "kinetoscope/models/captioner-world/model.safetensors",
        "kinetoscope/configs/dit-cpu.yaml", "kinetoscope/serve/static/index.html",
        "kinetoscope/release/MODEL.md.template", "kinetoscope/eval/paper_figures.json",
    ):  # fmt: skip
        assert shipped in names, shipped
    assert any(n.endswith("dist-info/licenses/LICENSE") or n.endswith("dist-info/LICENSE") for n in names)
    assert "PASSED" in run(sys.executable, "-m", "twine", "check", wheel, cwd=tmp_path).stdout  # metadata and README render

    # torch and the other dependencies come from this environment; kinetoscope only from the wheel.
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    python, kinetoscope = tmp_path / "venv" / "bin" / "python", tmp_path / "venv" / "bin" / "kinetoscope"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run(python, "-c", "import kinetoscope; print(kinetoscope.__file__)", cwd=empty).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where

    run(kinetoscope, "generate", "a red ball moves right", "--width", "64", "--height", "64", "--seconds", "1",
        "--steps", "4", "--out", "clip.mp4", cwd=empty)  # fmt: skip
    assert (empty / "clip.mp4").stat().st_size > 0
    run(kinetoscope, "caption", ".", "--out", "captions.jsonl", cwd=empty)
    (entry,) = [json.loads(line) for line in (empty / "captions.jsonl").read_text().splitlines()]
    assert entry["path"] == "clip.mp4" and entry["caption"].endswith(".") and len(entry["caption"].split()) >= 5
