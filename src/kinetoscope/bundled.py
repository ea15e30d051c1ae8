"""Where the bundled models are: found from the installed package, never from the working directory.

A model shipped as package data (``kinetoscope/models/NAME``) comes first; an editable install
or a source checkout finds the repository's ``models/NAME`` next to ``src/``. Every default
``--model`` and ``--captioner`` goes through :func:`bundled_model`, so commands work from any folder.
"""

from __future__ import annotations

from pathlib import Path

from kinetoscope.errors import CheckpointError

WORLD = "world"
CAPTIONER = "captioner-world"
_PACKAGE = Path(__file__).resolve().parent


def bundled_model(name: str) -> Path:
    """The directory of bundled model ``name`` (``world``, ``captioner-world``); refused if absent."""
    candidates = (_PACKAGE / "models" / name, _PACKAGE.parents[1] / "models" / name)
    for path in candidates:
        if path.is_dir():
            return path
    raise CheckpointError(
        f"The bundled model {name!r} is not installed (looked in {candidates[0]} and {candidates[1]}); "
        "pass a model directory explicitly.",
        param="model",
    )
