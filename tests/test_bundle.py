"""kinetoscope bundle: half-precision weights that load in fp32, the evaluation table, the model card's pictures, the size limit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from kinetoscope.bundle import SUITES

SMALL = ("--n", "1", "--size", "32x32", "--frames", "9", "--timing-size", "32x32", "--timing-seconds", "0.5")


def _table_rows(card: str) -> dict[str, list[str]]:
    """Suite name -> the cells of its row in the evaluation table."""
    section = card.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in SUITES:
            rows[cells[0]] = cells
    return rows


def _number(cell: str) -> float:
    match = re.match(r"^(-?[\d.]+(?:e-?\d+)?)", cell)
    assert match, f"no number in {cell!r}"
    return float(match.group(1))


def test_bundle_ships_fp16_weights_that_load_and_generate_with_a_model_card(tiny_model_dir, tmp_path, cli):
    from kinetoscope.io import read_video
    from kinetoscope.pipeline import Pipeline

    out = tmp_path / "world"
    code, stdout, err = cli("bundle", "--model", tiny_model_dir, "--out", out, "--note", "Trained for seconds on a CPU.", *SMALL)
    assert code == 0, err
    assert f"wrote {out}" in stdout

    # Every float tensor is stored in fp16 ...
    weights = sorted(out.rglob("*.safetensors"))
    assert {w.parent.name for w in weights} == {"vae", "dit", "text"}
    for path in weights:
        with safe_open(str(path), "pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes <= {"F16", "I64", "I32", "BOOL"} and "F16" in dtypes, (path, dtypes)
    # ... loads as fp32 and generates, through the library and the CLI.
    pipe = Pipeline.from_pretrained(out)
    assert {p.dtype for m in (pipe.vae, pipe.dit, pipe.text_encoder) for p in m.parameters()} == {torch.float32}
    assert pipe.model_id.startswith("world-")
    clip = tmp_path / "clip.mp4"
    code, _, err = cli("generate", "a red ball moves right", "--model", out, "--width", "32", "--height", "32",
                       "--frames", "5", "--steps", "2", "--out", clip)  # fmt: skip
    assert code == 0, err
    assert read_video(clip).frames.shape == (5, 32, 32, 3)

    card = (out / "MODEL.md").read_text()
    assert "Trained for seconds on a CPU." in card
    rows = _table_rows(card)
    assert set(rows) == set(SUITES)
    for suite, cells in rows.items():
        # This model's metric, or (where the tiny model draws no ball to follow) its conditioning fidelity.
        measured = [c for c in (cells[2], cells[5]) if c != "–"]
        assert measured and all(math.isfinite(_number(c)) for c in measured), (suite, cells)
    for suite in ("adherence", "permanence", "flicker"):
        assert math.isfinite(_number(rows[suite][2]))
    for suite in ("uniform", "collision", "parabola", "uniform-ood"):
        assert math.isfinite(_number(rows[suite][6]))  # the floor on the world's own clips
        assert "0.43" in rows[suite][7] or "floor" in rows[suite][7]  # the paper's figure beside it
    assert re.search(r"\*\*VAE PSNR:\*\* \d+\.\d\d dB", card)
    timing = re.search(r"\*\*(\d+\.\d) s\*\* for 0.5 s at 32x32", card)
    assert timing and float(timing.group(1)) > 0
    assert (out / "samples" / "main_command.mp4").is_file()
    assert "kinetoscope train vae --config" in card and "kinetoscope train dit --config" in card
    for picture in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card):
        assert (out / picture).is_file(), picture
    assert {"loss_vae.png", "loss_dit.png", "samples.png"} <= {p.name for p in (out / "pictures").iterdir()}
    assert (out / "eval" / "report.md").is_file()

    # One training leg, with its runs' steps and CPU-hours and the bundle's figures ...
    (leg,) = json.loads((out / "legs.json").read_text())
    assert leg["leg"] == 1 and leg["runs"]["dit"]["steps"] == 30 and leg["runs"]["vae"]["steps"] == 8
    assert leg["cpu_hours"] == pytest.approx(sum(r["cpu_hours"] for r in leg["runs"].values())) and leg["cpu_hours"] > 0
    assert set(leg["figures"]) == {"colour", "shape", "motion", "uniform_velocity", "vae_psnr", "vae_object_error"}
    assert re.search(r"Object colour error \(pixels unlike the clip's median colour\): (\d+\.\d levels of 255|–)", card)
    assert (out / "pictures" / "legs.png").is_file() and "## Training legs" in card
    # ... and bundling again into the same directory appends the next leg to the curve.
    code, _, err = cli("bundle", "--model", tiny_model_dir, "--out", out, "--note", "A second leg.", *SMALL)
    assert code == 0, err
    legs = json.loads((out / "legs.json").read_text())
    assert [leg["leg"] for leg in legs] == [1, 2] and legs[1]["note"] == "A second leg."
    assert legs[1]["cumulative_cpu_hours"] == pytest.approx(2 * legs[0]["cumulative_cpu_hours"])


def test_bundle_refuses_over_the_size_limit_and_keeps_the_old_bundle(tiny_model_dir, tmp_path, cli):
    out = tmp_path / "world"
    out.mkdir()
    (out / "old.txt").write_text("previous bundle")
    code, _, err = cli("bundle", "--model", tiny_model_dir, "--out", out, "--note", "n", "--max-mb", "0.1", *SMALL)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "over the 0.1 MB limit" in err
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert not list(Path(tmp_path).glob(".world.*"))  # no staging directory left behind
    code, _, err = cli("bundle", "--model", tmp_path, "--note", "n", "--out", tmp_path / "x")
    assert code == 2 and "model_index.json is missing" in err
