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


@app.callback()
def _group() -> None:
    # NOTE: the CLI registers only the invoked command's module; typer runs an app with a
    # single command *as* that command ("servesim version" would be an extra argument), but
    # never an app with a callback, which stays a group of subcommands.
    pass


@app.command("version")
def version() -> None:
    """Print servesim's version."""
    from servesim import __version__

    typer.echo(f"servesim {__version__}")
