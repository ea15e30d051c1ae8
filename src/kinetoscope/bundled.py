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


#: Where bundled models are looked for, in order: package data, then a source checkout's ``models/``.
_ROOTS = (_PACKAGE / "models", _PACKAGE.parents[1] / "models")


def bundled_models() -> list[Path]:
    """Every bundled model directory there is (the first found of each name)."""
    found: dict[str, Path] = {}
    for root in _ROOTS:
        for path in sorted(root.iterdir()) if root.is_dir() else []:
            if path.is_dir():
                found.setdefault(path.name, path)
    return list(found.values())


def bundled_model(name: str) -> Path:
    """The directory of bundled model ``name`` (``world``, ``captioner-world``); refused if absent."""
    candidates = tuple(root / name for root in _ROOTS)
    for path in candidates:
        if path.is_dir():
            return path
    raise CheckpointError(
        f"The bundled model {name!r} is not installed (looked in {candidates[0]} and {candidates[1]}); "
        "pass a model directory explicitly.",
        param="model",
    )
