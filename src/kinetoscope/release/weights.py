"""The bundle's weights: the transformer export (and captioner) copied in half precision, a VAE
whose decoder trained on swapped in, the size limit, and a check that the pipeline loads it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch

from kinetoscope.errors import CheckpointError, ConfigError
from kinetoscope.model_dir import MODEL_INDEX, read_index, stamp_model_id, write_index
from kinetoscope.release.options import DTYPES, BundleOptions


# ---------------------------------------------------------------- weights
def copy_weights(options: BundleOptions, stage: Path) -> list[dict[str, Any]]:
    """Copy the model (and captioner) into ``stage`` in half precision; refuse if over the size limit."""
    index = read_index(options.model)
    if index.get("text_encoder_path"):
        raise ConfigError(
            f"{options.model} uses an external text encoder ({index['text_encoder_path']}); a bundle must be "
            "self-contained, so bundle a model trained with the built-in text encoder.",
            param="model",
        )
    dtype = DTYPES[options.dtype]
    copy_tree(options.model, stage, dtype)
    if options.vae is not None:
        replace_vae(stage / "vae", options.vae, dtype)
    if options.captioner is not None:
        from kinetoscope.language.captioner import Captioner

        Captioner.from_pretrained(options.captioner)  # refuse anything that is not a captioner
        copy_tree(options.captioner, stage / "captioner", dtype)
    limit = options.max_mb * 1e6
    total = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    if total > limit:
        raise ConfigError(
            f"The bundle would take {total / 1e6:.1f} MB, over the {options.max_mb:g} MB limit; train a smaller "
            "model or raise --max-mb.",
            param="max_mb",
        )
    _write_sampling_defaults(options, stage, index)
    stamp_model_id(stage, options.out.name)  # the bundle's own name and its (half-precision) weights
    return [_component(d) for d in sorted(stage.iterdir()) if (d / "model.safetensors").is_file()]


def _write_sampling_defaults(options: BundleOptions, stage: Path, index: dict[str, Any]) -> None:
    """The guidance and sampling shift a call gets when it names none, as asked; else a later leg keeps what
    an earlier one measured: the replaced bundle's guidance where the export names none, and its sampling
    shift always (every export writes one, training's default)."""
    previous = read_index(options.out) if (options.out / MODEL_INDEX).is_file() else {}
    guidance = options.guidance
    if guidance is None and "guidance" not in index:
        guidance = previous.get("guidance")
    sample_shift = options.sample_shift
    if sample_shift is None:
        sample_shift = previous.get("flow", {}).get("sample_shift")
    shipped = read_index(stage)
    if guidance is not None:
        shipped["guidance"] = guidance
    if sample_shift is not None:
        shipped["flow"] = shipped.get("flow", {}) | {"sample_shift": sample_shift}
    write_index(stage, shipped)


def replace_vae(shipped: Path, vae: Path, dtype: torch.dtype) -> None:
    """Ship ``vae`` in place of the model's VAE, if its encoder is the one the transformer learnt
    (the latents are the same; only the pictures decoded from them change)."""
    from kinetoscope.data.latents import vae_digest

    if not (vae / "model.safetensors").is_file():
        raise CheckpointError(f"--vae {vae} is not a saved VAE (model.safetensors is missing).", param="vae")
    if vae_digest(vae) != vae_digest(shipped):
        raise ConfigError(
            f"--vae {vae} has another encoder than the model's VAE, so the transformer's latents mean nothing "
            "to it; pass a VAE trained on from the model's with task.train_encoder: false.",
            param="vae",
        )
    shutil.rmtree(shipped)
    copy_tree(vae, shipped, dtype)


def copy_tree(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """Copy a directory, writing every ``*.safetensors`` with its float tensors cast to ``dtype``."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".safetensors":
            target.parent.mkdir(parents=True, exist_ok=True)
            cast_safetensors(path, target, dtype)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def cast_safetensors(src: Path, dst: Path, dtype: torch.dtype) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        cast = tensor.to(dtype)
        if bool(torch.isfinite(tensor).all()) and not bool(torch.isfinite(cast).all()):
            raise ConfigError(f"{src}: tensor {name} does not fit in {dtype} (it overflows); bundle with --dtype bf16.")
        tensors[name] = cast.contiguous()
    save_file(tensors, str(dst), metadata=metadata)


def _component(directory: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        shapes = [f.get_slice(name).get_shape() for name in f.keys()]
        dtypes = sorted({str(f.get_slice(name).get_dtype()) for name in f.keys()})
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return {"name": directory.name, "parameters": sum(math.prod(s) for s in shapes), "dtypes": dtypes, "bytes": size}


def pipeline_check(model_dir: Path) -> tuple[float, float]:
    """The bundle loads as a pipeline whose weights are fp32 (half-precision files, full-precision CPU maths);
    returns the guidance and sampling shift it samples with when a call names none."""
    from kinetoscope.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model_dir)
    for name, module in (("vae", pipe.vae), ("dit", pipe.dit), ("text", pipe.text_encoder)):
        wrong = {str(p.dtype) for p in module.parameters() if p.dtype != torch.float32}
        if wrong:
            raise CheckpointError(f"The bundled {name} loaded with {', '.join(sorted(wrong))} weights, not float32.")
    return pipe.guidance, pipe.flow.sample_shift
