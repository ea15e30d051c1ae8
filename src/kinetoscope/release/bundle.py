"""Ship a trained model: ``models/world/`` in half precision, evaluated, with its model card.

:func:`bundle` copies a transformer export (``vae/``, ``dit/``, ``text/``, ``model_index.json``)
and optionally a captioner into the output directory with every float tensor cast to fp16 (or
bf16), refuses if the result is over the size limit, checks that the pipeline loads it, then
measures it with :mod:`kinetoscope.eval` (the suites ``kinetoscope eval world`` runs) and
:mod:`kinetoscope.vae.evaluate` (VAE PSNR), times the README's main command in a fresh process
on the CPU, and writes ``MODEL.md`` with the training runs' data, steps, compute and loss
curves, a sample sheet, the scores next to the physical-law paper's, and the retrain commands.
Everything is written into a temporary sibling directory that replaces ``out`` only when all
of it succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from kinetoscope.files import atomic_directory, atomic_write_json, atomic_write_text
from kinetoscope.release.legs import LEGS, append_leg, draw_legs, read_legs
from kinetoscope.release.card import MODEL_CARD, PICTURES, TRAINING, model_card
from kinetoscope.release.measure import SUITES, measure, bundle_generator, leg_figures
from kinetoscope.release.options import BundleOptions, bundle_command
from kinetoscope.release.pictures import draw_loss_curve, sample_sheet
from kinetoscope.release.runs import copy_run_configs, infer_runs, read_run
from kinetoscope.release.weights import copy_weights, pipeline_check


def bundle(options: BundleOptions) -> Path:
    """Build ``options.out`` (weights, evaluation, ``MODEL.md``); returns the model card's path."""
    from kinetoscope.progress import ProgressBar

    runs = [read_run(r) for r in (options.runs or infer_runs(options.model, options.captioner, options.vae))]
    kinds = [run["name"] for run in runs]
    for run in runs:  # two runs of a kind (a VAE and its decoder leg) go by their directories' names
        run["label"] = run["name"] if kinds.count(run["name"]) == 1 else Path(run["dir"]).name
    with atomic_directory(options.out) as stage:
        components = copy_weights(options, stage)
        guidance, sample_shift = pipeline_check(stage)
        steps = [*SUITES, "floors", "vae", "samples", "timing"]
        measured: dict[str, Any] = {}
        with ProgressBar(len(steps), "bundle", unit="step") as bar:
            generator = bundle_generator(stage, options.device)
            for step in steps:
                measured[step] = measure(step, stage, options, generator)
                bar.advance(1, step=step)
        pictures = stage / PICTURES
        pictures.mkdir(exist_ok=True)
        curves = {run["label"]: draw_loss_curve(run, pictures / f"loss_{run['label']}.png") for run in runs}
        sample_sheet(measured["samples"]).save(pictures / "samples.png")
        configs = copy_run_configs(runs, stage / TRAINING)
        _write_eval_report(stage / "eval", [measured[s] for s in SUITES], options)
        legs = append_leg(read_legs(options.out), runs, leg_figures(measured), options.note)
        atomic_write_json(stage / LEGS, legs)
        draw_legs(legs, pictures / "legs.png")
        card = model_card(options, components, runs, curves, measured, configs, legs, guidance=guidance, sample_shift=sample_shift)
        atomic_write_text(stage / MODEL_CARD, card)
    return options.out / MODEL_CARD


def _write_eval_report(directory: Path, results: list, options: BundleOptions) -> None:
    from kinetoscope.eval.report import write_report

    write_report(directory, results, title=f"{options.out} on the world suites", command=bundle_command(options))
