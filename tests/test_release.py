"""The release's pieces without a trained model: the model card from its template, the charts, the paper's figures."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from PIL import Image

from kinetoscope.release import SUITES, BundleOptions


class FakeSuite:
    """What the card reads of a suite's result: ``summary()`` (one metric, maybe conditioning) and ``claim_rates()``."""

    def __init__(self, metric, mean, unit, rate, conditioning=None):
        self.metric, self.mean, self.unit, self.rate, self.conditioning = metric, mean, unit, rate, conditioning

    def summary(self):
        row = {"mean": self.mean, "median": self.mean, "pass_rate": self.rate, "clips": 2, "of": 3, "unit": self.unit}
        conditioning = {"conditioning": {**row, "mean": self.conditioning, "unit": "dB"}} if self.conditioning else {}
        return {self.metric: row, **conditioning}

    def claim_rates(self):
        return {"colour": 0.5, "shape": 0.25, "motion": 0.75}


def _legs(*figures):
    return [
        {"leg": i + 1, "date": f"2025-01-0{i + 1}", "note": str(i), "runs": {"dit": {"steps": 10 * (i + 1), "cpu_hours": 0.5}},
         "counted": [], "cpu_hours": 0.5, "cumulative_cpu_hours": 0.5 * (i + 1), "figures": f}
        for i, f in enumerate(figures)
    ]  # fmt: skip


def _rows(*losses):
    return [{"step": str(10 * i), "loss": str(loss), "steps_per_s": "2.0"} for i, loss in enumerate(losses, 1)]


def card_inputs(tmp: Path):
    """Everything :func:`model_card` takes, for two runs (one with a summary) and two legs."""
    options = BundleOptions(model=Path("runs/dit/final"), out=Path("models/world"), runs=(Path("runs/vae"), Path("runs/dit")),
                            note="Trained for seconds on a CPU.", n=2, width=32, height=32, frames=9,
                            timing_width=32, timing_height=32, timing_seconds=0.5)  # fmt: skip
    components = [
        {"name": "dit", "parameters": 1_234_567, "dtypes": ["F16", "I64"], "bytes": 2_500_000},
        {"name": "vae", "parameters": 345_678, "dtypes": ["F16"], "bytes": 700_000},
    ]
    world = {"scenarios": ["uniform", "bounce"], "sizes": [[32, 32]], "frames": [1, 5], "fps": 10.0}
    runs = [
        {"name": "vae", "label": "vae", "dir": Path("runs/vae"), "config": {"steps": 8, "data": {"source": "world", "world": world}},
         "rows": _rows(3.0, 0.5), "summary": {"steps_done": 8, "stopped_by": "time_limit", "time_limit_minutes": 30.0,
                                             "device": "cpu", "train_seconds": 40.0}},
        {"name": "dit", "label": "dit", "dir": Path("runs/dit"), "config": {"steps": 30, "data": {"source": "manifest", "manifest": "m.jsonl"}},
         "rows": _rows(3.0, 0.5, 0.1), "summary": None},
    ]  # fmt: skip
    measured = {name: FakeSuite("velocity", 0.031, "units/s", 0.5, conditioning=33.25) for name in SUITES[:6]}
    measured |= {name: FakeSuite("adherence", 0.5, "", 0.5) for name in ("adherence", "objects")}
    measured |= {"permanence": FakeSuite("permanence", 1.5, "px", 0.0, 29.0), "flicker": FakeSuite("flicker", 0.01, "", 1.0, 31.5)}
    measured["floors"] = {s: FakeSuite("velocity", 0.011, "units/s", 1.0) for s in SUITES[:6]}
    measured["vae"] = {"psnr": 27.123, "ssim": 0.91234, "clips": 4, "shape": "9x32x32", "object_error": None,
                      "objects": {"colour": 1.0, "shape": 0.85, "motion": 0.975}}
    measured["samples"] = [("a red ball moves right", None), ("a blue square falls", None)]
    measured["timing"] = {"command": "kinetoscope generate 'a red ball' --out ball.mp4", "seconds": 3.21, "cpus": 2}
    configs = {"vae": tmp / "vae.json", "dit": tmp / "dit.json"}
    legs = _legs({"colour": 0.25, "shape": 0.5, "motion": None, "uniform_velocity": 0.2}, {"colour": 0.5, "uniform_velocity": 0.1})
    return options, components, runs, {"vae": "loss_vae.png", "dit": "loss_dit.png"}, measured, configs, legs


# ---------------------------------------------------------------- the model card
def test_the_card_template_is_filled_in_everywhere(tmp_path):
    from kinetoscope.pipeline.request import DEFAULT_STEPS
    from kinetoscope.release.card import model_card, template

    card = model_card(*card_inputs(tmp_path), guidance=2.5, sample_shift=2)
    assert "$" not in card
    # The only braces are the objects suite's prompt pattern, which the card quotes.
    assert re.findall(r"\{\w*\}", card) == ["{colour}", "{shape}", "{direction}"]
    assert card.startswith("# models/world") and card.endswith("```\n") and "\n\n\n" not in card
    assert "**How this model was trained:** Trained for seconds on a CPU." in card
    assert "| all | 1.58M | | 3.2 MB (limit 150 MB) |" in card
    assert "| world: uniform, bounce; sizes 32x32; frames 1, 5 at 10 fps | 8 of 8 | time limit (30 min budget) |" in card
    assert "![dit loss](pictures/loss_dit.png)" in card and "![legs](pictures/legs.png)" in card
    assert "2 clips per suite, 32x32, 9 frames at 10 fps, seed 0;" in card
    assert f"(seed 0, {DEFAULT_STEPS} steps, guidance 2.5, sampling shift 2, the model's own)" in card
    assert "| uniform | velocity | 0.031 units/s | 50% | 2 of 3 | 33.25 dB | 0.011 | 0.022 (DiT-S" in card
    assert "Object colour error (pixels unlike the clip's median colour): –." in card
    assert "through the VAE read colour 100%, shape 85%, motion 98%: the most the transformer can reach" in card
    assert "**3.2 s** for 0.5 s at 32x32 on 2 CPU cores" in card
    assert "1. a red ball moves right\n2. a blue square falls\n" in card
    assert "kinetoscope train vae --config models/world/training/vae.json --set steps=8 --set time_limit_minutes=null\n" in card
    # Every placeholder of the template is one the card fills, and the card fills no other.
    used = {m.group("named") or m.group("braced") for m in template().pattern.finditer(template().template)}
    assert None not in used and len(used) > 20
    with pytest.raises(KeyError):
        string.Template(template().template + "$unknown").substitute({name: "x" for name in used})


def test_the_card_template_ships_as_package_data():
    import tomllib

    from kinetoscope.release.card import TEMPLATE

    globs = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path("release", TEMPLATE).match(glob.removeprefix("**/")) for glob in globs["kinetoscope"])
    assert any(Path("eval/paper_figures.json").match(glob.removeprefix("**/")) for glob in globs["kinetoscope"])


# ---------------------------------------------------------------- charts
def _colours(path: Path) -> int:
    with Image.open(path) as image:
        return len(image.convert("RGB").getcolors(1 << 20))


def test_the_loss_curve_is_a_chart_with_axes_on_a_log_scale_when_the_loss_spans_widely(tmp_path):
    from kinetoscope.release.pictures import LOSS_SIZE, draw_loss_curve, loss_figure

    run = {"label": "dit", "rows": [*_rows(3.0, 0.5, 0.1), {"step": "40", "loss": "nan"}]}
    assert draw_loss_curve(run, tmp_path / "loss_dit.png") == "loss_dit.png"
    with Image.open(tmp_path / "loss_dit.png") as image:
        assert image.size == LOSS_SIZE
    assert _colours(tmp_path / "loss_dit.png") > 20  # a curve, ticks and text, not a blank canvas
    (ax,) = loss_figure(run).axes
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [10, 20, 30]  # the non-finite loss is left out
    assert ax.get_legend() is not None and len(ax.get_xticks()) > 2
    (ax,) = loss_figure({"label": "vae", "rows": _rows(0.3, 0.2, 0.1)}).axes
    assert ax.get_yscale() == "linear"  # 3x: a linear scale
    draw_loss_curve({"label": "empty", "rows": []}, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()


def test_the_legs_chart_has_a_point_per_leg_and_the_velocity_error_on_its_own_axis(tmp_path):
    from kinetoscope.release.legs import LEGS_SIZE, draw_legs, legs_figure

    full = {"colour": 0.25, "shape": 0.5, "motion": 0.5, "uniform_velocity": 0.2}
    legs = _legs(full, {**full, "motion": None, "uniform_velocity": 0.1}, {**full, "colour": 0.9, "uniform_velocity": 0.05})
    assert draw_legs(legs, tmp_path / "legs.png") == "legs.png"
    with Image.open(tmp_path / "legs.png") as image:
        assert image.size == LEGS_SIZE
    assert _colours(tmp_path / "legs.png") > 20
    shares, errors = legs_figure(legs).axes
    points = {line.get_label(): list(line.get_xdata()) for ax in (shares, errors) for line in ax.get_lines()}
    every = [0.5, 1.0, 1.5]  # the legs' cumulative CPU-hours
    assert points == {"colour": every, "shape": every, "direction": [0.5, 1.5], "uniform velocity error": every}
    assert [line.get_label() for line in errors.get_lines()] == ["uniform velocity error"]  # the second y-axis
    assert "units/s" in errors.get_ylabel() and shares.get_ylim()[1] > 1.0 and shares.get_xlabel()
    assert legs_figure(legs).legends  # one legend, for both axes' curves
    # Errors spanning more than 20x go on a log scale.
    _, errors = legs_figure(_legs({"uniform_velocity": 0.5}, {"uniform_velocity": 0.01})).axes
    assert errors.get_yscale() == "log"
    draw_legs([], tmp_path / "none.png")  # no legs yet: an empty chart, no error
    assert (tmp_path / "none.png").is_file()


def test_charts_leave_the_users_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from kinetoscope.plots import figure, save, spans_widely

    before = matplotlib.get_backend()
    fig = figure(200, 100)
    fig.add_subplot().plot([0, 1], [0, 1])
    assert save(fig, tmp_path / "c.png") == "c.png"
    with Image.open(tmp_path / "c.png") as image:
        assert image.size == (200, 100)
    assert matplotlib.get_backend() == before
    assert spans_widely([0.01, 1.0]) and not spans_widely([0.1, 1.0]) and not spans_widely([-1.0, 100.0]) and not spans_widely([])


# ---------------------------------------------------------------- the paper's figures
def test_the_paper_figures_are_one_file_read_by_the_eval_report_and_the_card():
    from kinetoscope.eval.paper import paper_figure, paper_figures
    from kinetoscope.eval.suites import SUITES as EVAL_SUITES

    figures = paper_figures()
    assert "Kang" in figures["source"] and figures["cite"] and "10 fps" in figures["setting"]
    assert set(figures["velocity_error"]) <= set(EVAL_SUITES)
    assert "0.022" in paper_figure("uniform") and paper_figure("flicker") is None
    assert not (Path(__file__).parents[1] / "src/kinetoscope/release/paper_figures.json").exists()
