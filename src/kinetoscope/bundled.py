"""Where the bundled models are: found from the installed package, never from the working directory.

They ship as package data, ``kinetoscope/models/NAME`` (a source checkout's ``models/`` links
there). Every default ``--model`` and ``--captioner`` goes through :func:`bundled_model`, so
commands work from any folder, installed from a wheel or from a checkout.
"""

from __future__ import annotations

from pathlib import Path

from kinetoscope.errors import CheckpointError

WORLD = "world"
CAPTIONER = "captioner-world"
MODELS = Path(__file__).resolve().parent / "models"


def bundled_models() -> list[Path]:
    """Every bundled model directory there is."""
    return sorted(p for p in MODELS.iterdir() if p.is_dir() and not p.name.startswith(".")) if MODELS.is_dir() else []


def bundled_model(name: str) -> Path:
    """The directory of bundled model ``name`` (``world``, ``captioner-world``); refused if absent."""
    path = MODELS / name
    if not path.is_dir():
        raise CheckpointError(
            f"The bundled model {name!r} is not installed (looked in {path}); pass a model directory explicitly.",
            param="model",
        )
    return path
