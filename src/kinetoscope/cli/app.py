"""The root of the command line: the typer app every command module registers on, and ``run``."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from kinetoscope.errors import KinetoscopeError

app = typer.Typer(
    name="kinetoscope",
    help="Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from kinetoscope import __version__

        typer.echo(f"kinetoscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open, trainable text-to-video: a causal 3D VAE, spacetime patches and a diffusion transformer."""


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by ``main`` and the tests)."""
    command = typer.main.get_command(app)
    try:
        # Standalone mode lets click/typer print usage errors and help the way users expect.
        command.main(args=argv, prog_name="kinetoscope", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KinetoscopeError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    return 0


def main() -> None:
    sys.exit(run())
