"""The typer application object shared by every command module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="servesim",
    help="Predict and explain the performance of LLM inference serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("version")
def version() -> None:
    """Print servesim's version."""
    from servesim import __version__

    typer.echo(f"servesim {__version__}")

