"""Whole checkpoints: a Wan2.1 text-to-video model in diffusers' layout -> a kinetoscope model
directory (:func:`import_wan`), and a kinetoscope model's transformer and LoRA adapters -> diffusers'
layout (:func:`export_wan`). Nothing is downloaded: both read and write local folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from kinetoscope.errors import CheckpointError, InvalidInputError, require
from kinetoscope.model_dir import read_index, save_model_dir
from kinetoscope.wan.transformer import load_dit, save_lora, save_transformer
from kinetoscope.wan.vae import load_vae

#: diffusers' parts of a Wan2.1 text-to-video model.
PARTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def import_wan(source: str | Path, out: str | Path, *, dtype: str | None = None, name: str | None = None) -> Path:
    """Write a kinetoscope model directory at ``out`` from the diffusers-layout Wan2.1 model at ``source``.

    The transformer keeps the checkpoint's precision unless ``dtype`` (float32, bfloat16, float16)
    is given; the VAE is float32. The UMT5 encoder and its tokenizer are copied in (hard links
    where possible), and the sampler's time shift is the scheduler's ``flow_shift``.
    """
    require("diffusers", "Importing a Wan checkpoint")
    source, out = Path(source), Path(out)
    _check_source(source)
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.", param="dtype")
    dit = load_dit(source / "transformer")
    if dtype is not None:
        dit.to(DTYPES[dtype])
    vae = load_vae(source / "vae")
    from kinetoscope.flow import FlowConfig

    shift = flow_shift(source / "scheduler")
    flow = FlowConfig(shift_at_base=shift, shift_at_max=shift).to_dict()  # one shift at every size, as Wan
    return save_model_dir(
        out, vae=vae, dit=dit, flow=flow, name=name or out.name,
        hf_text_encoder=source / "text_encoder", hf_tokenizer=source / "tokenizer",
        # The world's prompt expander would rewrite prompts into captions Wan never read.
        extra={"converted_from": "Wan2.1 (diffusers)", "expand_prompts": False},
    )  # fmt: skip


def _check_source(source: Path) -> None:
    """Refuse, in one sentence, anything but a diffusers-layout Wan2.1 text-to-video model."""
    if not source.is_dir():
        raise InvalidInputError(
            f"{source} is not a folder; give a Wan2.1 text-to-video model in diffusers' layout "
            f"({', '.join(p + '/' for p in PARTS)}).",
            param="source",
        )
    index_path = source / "model_index.json"
    index: dict[str, Any] = json.loads(index_path.read_text()) if index_path.is_file() else {}
    pipeline = index.get("_class_name", "WanPipeline")
    if "ImageToVideo" in pipeline or (source / "image_encoder").is_dir():
        raise InvalidInputError(
            f"{source} is a Wan image-to-video model ({pipeline}); only text-to-video Wan2.1 models import for now.",
            param="source",
        )
    if pipeline != "WanPipeline":
        raise InvalidInputError(f"{source} holds a {pipeline}; kinetoscope imports WanPipeline models.", param="source")
    if (index.get("transformer_2") or [None])[0] is not None or index.get("expand_timesteps"):
        raise InvalidInputError(
            f"{source} is a Wan2.2 model (two transformers or per-token timesteps); kinetoscope imports Wan2.1's.",
            param="source",
        )
    missing = [part for part in PARTS if not (source / part).is_dir()]
    if missing:
        raise InvalidInputError(
            f"{source} lacks {', '.join(p + '/' for p in missing)}; a Wan2.1 model in diffusers' layout has "
            f"{', '.join(p + '/' for p in PARTS)}.",
            param="source",
        )


def flow_shift(scheduler_dir: Path) -> float:
    """The fixed time shift of a diffusers flow-matching scheduler (``flow_shift``, or ``shift``)."""
    diffusers = require("diffusers", "Importing a Wan checkpoint")
    path = scheduler_dir / "scheduler_config.json"
    if not path.is_file():
        raise CheckpointError(f"{scheduler_dir} has no scheduler_config.json.", param="source")
    class_name = json.loads(path.read_text()).get("_class_name")
    scheduler_class = getattr(diffusers, str(class_name), None)
    if scheduler_class is None:
        raise CheckpointError(f"{path} names {class_name!r}, which is not a diffusers scheduler.", param="source")
    config = scheduler_class.from_config(scheduler_class.load_config(scheduler_dir)).config
    shift = config.get("flow_shift", config.get("shift"))
    if shift is None or config.get("use_dynamic_shifting"):
        raise CheckpointError(f"{path} ({class_name}) has no fixed flow shift to sample with.", param="source")
    return float(shift)


def export_wan(model: str | Path, out: str | Path) -> list[Path]:
    """Write ``out/transformer`` (diffusers' ``WanTransformer3DModel``, LoRA merged in) and, when the model
    keeps LoRA adapters, ``out/pytorch_lora_weights.safetensors`` (to load onto the original weights)."""
    from kinetoscope.dit import DiT

    model, out = Path(model), Path(out)
    index = read_index(model)
    weights = model / "dit" / "model.safetensors"
    dit = DiT.from_pretrained(model / "dit", dtype=_stored_dtype(weights))
    written = [save_transformer(dit, out / "transformer")]
    if index.get("lora"):
        from safetensors.torch import load_file

        from kinetoscope.train.lora import LoRAConfig

        adapters_dir = model / index["lora"]
        lora = LoRAConfig.load_json(adapters_dir / "adapter_config.json")
        adapters = load_file(str(adapters_dir / "adapter.safetensors"))
        written.append(save_lora(adapters, lora.rank, lora.alpha, dit.config, out))
    return written


def _stored_dtype(weights: Path) -> torch.dtype:
    """The precision a safetensors file stores (the export keeps it: a 14B model is 28 GB in bf16, 56 in fp32)."""
    from safetensors import safe_open

    if not weights.is_file():
        raise CheckpointError(f"{weights.parent} is not a DiT directory: {weights.name} is missing.", param="model")
    with safe_open(str(weights), "pt") as f:
        return f.get_tensor(next(iter(f.keys()))).dtype
