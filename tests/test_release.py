"""The release's pieces without a trained model: the charts, the paper's figures."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def _legs(*figures):
    return [
        {"leg": i + 1, "date": f"2025-01-0{i + 1}", "note": str(i), "runs": {"dit": {"steps": 10 * (i + 1), "cpu_hours": 0.5}},
         "counted": [], "cpu_hours": 0.5, "cumulative_cpu_hours": 0.5 * (i + 1), "figures": f}
        for i, f in enumerate(figures)
    ]  # fmt: skip


def _rows(*losses):
    return [{"step": str(10 * i), "loss": str(loss), "steps_per_s": "2.0"} for i, loss in enumerate(losses, 1)]


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
