"""The ``kinetoscope`` command line: one typer app, one module per command group.

Each command is a thin call into the library; options that several commands share are
``Annotated`` aliases in :mod:`.options`. Heavy imports (torch, av) happen inside commands so
that ``--help`` stays instant. Any :class:`~kinetoscope.errors.KinetoscopeError` becomes one
sentence on stderr and exit code 2.
"""

from kinetoscope.cli.app import app, main, run

# Registered in this order, which is the order of ``kinetoscope --help``.
from kinetoscope.cli import generate, language, media, world, train, evaluate, serve, safety, wan  # noqa: E402, F401

__all__ = ["app", "main", "run"]
