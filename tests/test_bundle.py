"""kinetoscope bundle: half-precision weights that load in fp32, the evaluation table, the model card's pictures, the size limit."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from kinetoscope.release import SUITES

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
    code, stdout, err = cli(
        "bundle", "--model", tiny_model_dir, "--out", out, "--note", "Trained for seconds on a CPU.", "--guidance", "2.5",
        "--sample-shift", "2", *SMALL
    )  # fmt: skip
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
    assert pipe.model_id.startswith("world-") and pipe.guidance == 2.5  # what every measurement below sampled with
    assert pipe.flow.sample_shift == 2.0
    clip = tmp_path / "clip.mp4"
    code, _, err = cli("generate", "a red ball moves right", "--model", out, "--width", "32", "--height", "32",
                       "--frames", "5", "--steps", "2", "--out", clip)  # fmt: skip
    assert code == 0, err
    assert read_video(clip).frames.shape == (5, 32, 32, 3)

    card = (out / "MODEL.md").read_text()
    assert "Trained for seconds on a CPU." in card
    assert "guidance 2.5, sampling shift 2, the model's own" in card and "--guidance 2.5 --sample-shift 2 --dtype" in card
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
    assert set(leg["figures"]) == {"colour", "shape", "motion", "uniform_velocity", "vae_psnr", "vae_object_error", "vae_shape"}
    assert 0 <= leg["figures"]["vae_shape"] <= 1
    assert re.search(r"Object colour error \(pixels unlike the clip's median colour\): (\d+\.\d levels of 255|–)", card)
    assert re.search(r"through the VAE read colour \d+%, shape \d+%, motion \d+%: the most", card)
    assert (out / "pictures" / "legs.png").is_file() and "## Training legs" in card
    # ... and bundling again into the same directory appends the next leg to the curve.
    code, _, err = cli("bundle", "--model", tiny_model_dir, "--out", out, "--note", "A second leg.", *SMALL)
    assert code == 0, err
    legs = json.loads((out / "legs.json").read_text())
    assert [leg["leg"] for leg in legs] == [1, 2] and legs[1]["note"] == "A second leg."
    index = json.loads((out / "model_index.json").read_text())
    assert index["guidance"] == 2.5 and index["flow"]["sample_shift"] == 2.0  # what leg 1 was given
    # Its runs trained no further, so it adds no steps and no CPU-hours.
    assert legs[1]["runs"] == {} and legs[1]["cumulative_cpu_hours"] == pytest.approx(legs[0]["cumulative_cpu_hours"])


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
    for option, value, words in (("--guidance", "-1", "--guidance must be at least 0, got -1."),
                                 ("--sample-shift", "0", "--sample-shift must be above 0, got 0.")):
        code, _, err = cli("bundle", "--model", tiny_model_dir, "--note", "n", "--out", out, option, value, *SMALL)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


def _run(directory: str, steps: int, **summary) -> dict:
    return {"name": "dit", "dir": directory, "rows": [], "summary": {"steps_done": steps, **summary}}


def test_each_leg_counts_only_what_its_runs_added_since_the_last():
    from kinetoscope.release.legs import append_leg

    figures = {"colour": 0.5}
    legs = append_leg([], [_run("runs/a", 100, train_seconds=3600.0, cpu_seconds=7200.0, threads=2)], figures, "one")
    assert legs[0]["runs"]["dit"] == {"steps": 100, "cpu_hours": 2.0}
    # The same run, trained on at one thread, and a second run of the same kind, new this leg.
    runs = [
        _run("runs/a", 250, train_seconds=9000.0, cpu_seconds=12600.0, threads=1),
        _run("runs/b", 40, train_seconds=1800.0, cpu_seconds=1800.0, threads=1),
    ]
    legs = append_leg(legs, runs, figures, "two")
    assert legs[1]["runs"]["dit"] == {"steps": 150 + 40, "cpu_hours": pytest.approx(1.5 + 0.5)}
    assert legs[1]["cumulative_cpu_hours"] == pytest.approx(4.0)
    # Nothing trained since: a bundle again adds no steps and no hours.
    legs = append_leg(legs, runs, figures, "three")
    assert legs[2]["runs"] == {} and legs[2]["cumulative_cpu_hours"] == pytest.approx(4.0)
    # A run from before the trainer kept cpu_seconds: the time since, at its last thread count.
    old = append_leg(legs, [_run("runs/a", 300, train_seconds=10800.0, threads=2)], figures, "four")
    assert old[3]["runs"]["dit"] == {"steps": 50, "cpu_hours": pytest.approx(1.0)}
    # Resumed once since the last count: that invocation's time at its threads, whatever its
    # cpu_seconds total says of earlier ones (a resumed old checkpoint counts them at today's threads).
    once = _run("runs/a", 400, train_seconds=14400.0, cpu_seconds=1.0, threads=1, started_at_step=300)
    assert append_leg(old, [once], figures, "five")[4]["runs"]["dit"] == {"steps": 100, "cpu_hours": pytest.approx(1.0)}


def test_legs_scored_before_the_count_claim_counted_objects_are_marked():
    from kinetoscope.release.legs import append_leg, legs_table

    old = append_leg([], [_run("runs/a", 100, train_seconds=3600.0)], {"colour": 0.8}, "one")
    del old[0]["adherence_counts"]  # as legs.json held it before
    legs = append_leg(old, [_run("runs/a", 200, train_seconds=7200.0)], {"colour": 0.4}, "two")
    assert legs[1]["adherence_counts"] == "objects"
    table = legs_table(legs)
    assert table[2].startswith("| 1* |") and table[3].startswith("| 2 |") and "counted colours" in table[-1]
    assert "counted colours" not in "\n".join(legs_table(legs[1:]))


def test_bundle_ships_a_vae_whose_decoder_trained_on_and_refuses_another_encoder(tiny_model_dir, tmp_path):
    from kinetoscope.release.weights import replace_vae
    from kinetoscope.errors import ConfigError
    from kinetoscope.vae import CausalVAE

    shipped = tmp_path / "bundle" / "vae"
    shipped.parent.mkdir()
    shutil.copytree(Path(tiny_model_dir) / "vae", shipped)
    vae = CausalVAE.from_pretrained(shipped)
    with torch.no_grad():
        next(vae.decoder.parameters()).add_(1.0)
        vae.save_pretrained(tmp_path / "decoder")
        next(vae.encoder.parameters()).add_(1.0)
        vae.save_pretrained(tmp_path / "encoder")
    with pytest.raises(ConfigError, match="another encoder"):
        replace_vae(shipped, tmp_path / "encoder", torch.float16)
    replace_vae(shipped, tmp_path / "decoder", torch.float16)
    decoded = next(CausalVAE.from_pretrained(shipped).decoder.parameters())
    assert torch.allclose(decoded, next(vae.decoder.parameters()), atol=1e-2)
