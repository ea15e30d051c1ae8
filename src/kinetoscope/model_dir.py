"""A model directory: what ``kinetoscope train dit`` exports, ``kinetoscope bundle`` ships and
``Pipeline`` loads. This module alone reads and writes one.

It is laid out as a diffusers pipeline is: ``model_index.json`` names the parts, and each part is
a saved ``PretrainedModel`` beside it (``vae/``, ``dit/``, and ``text/`` for the built-in text
encoder with its tokenizer). A Hugging Face text encoder is copied into ``text_encoder/`` (hard
links where the file system allows), so a model directory holds no path outside itself and
moves or copies as one. The index also holds the sampler's ``flow`` config, the ``model_id``
the watermark names, ``lora`` where adapters are kept beside the merged weights,
``expand_prompts: false`` for a model whose text encoder did not learn the world's captions
(prompts then reach it as written), and ``guidance``, the classifier-free guidance the model
was measured to sample best with (a call that names none gets it). A fine-tune keeps its
model's ``INHERITED`` entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from kinetoscope.errors import CheckpointError
from kinetoscope.files import atomic_write_json

MODEL_INDEX = "model_index.json"
#: Where a Hugging Face text encoder is copied to inside the model directory.
HF_TEXT_ENCODER = "text_encoder"
#: Index entries that describe the model rather than the run that wrote it: a fine-tune keeps them.
INHERITED = ("expand_prompts", "converted_from")


def read_index(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The directory's ``model_index.json``; refused in one sentence if it is missing or not JSON."""
    path = Path(model_dir) / MODEL_INDEX
    if not path.is_file():
        raise CheckpointError(
            f"{model_dir} is not a kinetoscope model directory: {MODEL_INDEX} is missing "
            "(train one with `kinetoscope train dit`, which writes RUN_DIR/final).",
            param="model",
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}.", param="model") from None


def model_guidance(model_dir: str | os.PathLike, index: dict[str, Any], default: float) -> float:
    """The index's ``guidance`` (``default`` where it names none); refused in one sentence if it is not a number >= 0."""
    guidance = index.get("guidance", default)
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance >= 0:
        raise CheckpointError(
            f"{Path(model_dir) / MODEL_INDEX} gives guidance {guidance!r}; it must be a number of at least 0.",
            param="model",
        )
    return float(guidance)


def write_index(model_dir: str | os.PathLike, index: dict[str, Any]) -> None:
    atomic_write_json(Path(model_dir) / MODEL_INDEX, index)


def weights_id(name: str, weights: str | os.PathLike) -> str:
    """``name`` and a digest of the transformer's weights: the model id, distinct per trained model."""
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:8]
    return f"{name}-{digest}"


def stamp_model_id(model_dir: str | os.PathLike, name: str) -> str:
    """Name the directory's model after ``name`` and its transformer's weights as they are now."""
    index = read_index(model_dir)
    index["model_id"] = weights_id(name, Path(model_dir) / "dit" / "model.safetensors")
    write_index(model_dir, index)
    return index["model_id"]


def model_id_for(model_dir: str | os.PathLike) -> str:
    """The id a model directory's outputs are watermarked with: the index's, else the directory's name."""
    model_dir = Path(model_dir)
    if (model_dir / MODEL_INDEX).is_file():
        model_id = read_index(model_dir).get("model_id")
        if isinstance(model_id, str) and model_id.strip():
            return model_id.strip()
    return model_dir.resolve().name


def hf_text_encoder_dir(model_dir: str | os.PathLike, index: dict[str, Any]) -> Path | None:
    """The Hugging Face text encoder the model uses, or None for the built-in one in ``text/``."""
    given = index.get("text_encoder_path")
    if not given:
        return None
    # Relative to the model directory; absolute only in directories written before encoders were copied in.
    return Path(given) if Path(given).is_absolute() else Path(model_dir) / given


def save_model_dir(
    out_dir: str | os.PathLike,
    *,
    vae: Any,
    dit: Any,
    flow: dict[str, Any],
    name: str,
    text: Any = None,
    hf_text_encoder: str | os.PathLike | None = None,
    hf_tokenizer: str | os.PathLike | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory: ``vae`` and ``dit``, then ``text`` (the built-in encoder) or a copy of
    the Hugging Face encoder directory ``hf_text_encoder``, and the index (``extra`` entries added).
    ``hf_tokenizer``: the encoder's tokenizer where it is kept in a directory of its own (diffusers'
    layout); its files are copied in beside the encoder's, where ``HFTextEncoder`` reads them."""
    out_dir = Path(out_dir)
    index: dict[str, Any] = {
        "_class_name": "KinetoscopePipeline",
        "vae": ["kinetoscope.vae", "CausalVAE"],
        "dit": ["kinetoscope.dit", "DiT"],
        "flow": flow,
        **(extra or {}),
    }
    vae.save_pretrained(out_dir / "vae")
    dit.save_pretrained(out_dir / "dit")
    if hf_text_encoder is not None:
        copy_linked(Path(hf_text_encoder), out_dir / HF_TEXT_ENCODER)
        if hf_tokenizer is not None:
            copy_linked(Path(hf_tokenizer), out_dir / HF_TEXT_ENCODER, merge=True)
        index["text"] = ["kinetoscope.text", "HFTextEncoder"]
        index["text_encoder_path"] = HF_TEXT_ENCODER
    else:
        text.save_pretrained(out_dir / "text")
        index["text"] = ["kinetoscope.text", "TextEncoder"]
    index["model_id"] = weights_id(name, out_dir / "dit" / "model.safetensors")
    write_index(out_dir, index)
    return out_dir


def copy_linked(src: Path, dst: Path, merge: bool = False) -> None:
    """Copy a directory, hard-linking its files where the file system allows (an encoder can be gigabytes);
    ``merge`` adds its files to ``dst`` rather than replacing ``dst``."""
    if src.resolve() == dst.resolve():
        return

    def link_or_copy(source: str, target: str) -> None:
        if os.path.lexists(target):  # writing over it could write through a hard link into another copy
            os.remove(target)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    if dst.exists() and not merge:
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=link_or_copy, dirs_exist_ok=merge)
